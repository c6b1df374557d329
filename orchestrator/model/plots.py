"""Evaluation plots as PNG: confusion matrix, one-vs-rest ROC curves, per-class bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import MissingExtraError

__all__ = ["write_evaluation_plots"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingExtraError("matplotlib", "train", purpose="plots") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_evaluation_plots(out_dir: Path, report: dict[str, Any], y_true: np.ndarray, proba: np.ndarray,
                           classes: list[Any]) -> list[Path]:
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"Software": None}  # no version string: identical inputs give identical bytes
    written: list[Path] = []

    cm = np.asarray(report["confusion_matrix"]["matrix"])
    labels = report["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (accuracy {report['accuracy']:.3f})")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = out_dir / "confusion_matrix.png"
    fig.savefig(path, dpi=100, metadata=meta)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(6, 5))
    for i, label in enumerate(classes):
        positives = np.asarray(y_true) == label
        if 0 < positives.sum() < len(positives):
            fpr, tpr, _ = roc_curve(positives, proba[:, i])
            auc = report["roc_auc_ovr_per_class"].get(str(label))
            ax.plot(fpr, tpr, lw=1, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    macro = report.get("roc_auc_ovr_macro")
    ax.set_title("One-vs-rest ROC" + (f" (macro AUC {macro:.4f})" if macro is not None else ""))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = out_dir / "roc_ovr.png"
    fig.savefig(path, dpi=100, metadata=meta)
    plt.close(fig)
    written.append(path)

    per_class = report["per_class"]
    names = list(per_class)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.6), 4))
    for offset, metric in ((-0.27, "precision"), (0.0, "recall"), (0.27, "f1")):
        ax.bar(x + offset, [per_class[n][metric] for n in names], width=0.27, label=metric)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("class")
    ax.set_title("Per-class precision, recall and F1")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = out_dir / "per_class_prf.png"
    fig.savefig(path, dpi=100, metadata=meta)
    plt.close(fig)
    written.append(path)
    return written
