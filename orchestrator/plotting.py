"""What the report writers (``mco router report``, ``mco monitor --report``) share about
matplotlib: loading it headless, and the finish of a figure of stacked panels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import MissingExtraError

__all__ = ["pyplot", "save_panels"]


def pyplot(*, extra: str, purpose: str) -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), or MissingExtraError naming ``extra``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError("matplotlib", extra, purpose=purpose) from exc
    return plt


def save_panels(fig: Any, axes: Sequence[Any], png: Path, *, title: str, legend_columns: int) -> None:
    """A grid on every panel, a legend on those with labelled lines, ``title`` on the top one;
    then the PNG (100 dpi) and the figure closed."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left", ncol=legend_columns)
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
