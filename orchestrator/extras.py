"""Optional extras: cloud SDKs and heavy libraries are imported only when first used.

``pip install mco`` stays small; ``mco[aws]``, ``mco[gcp]``... add what one cloud needs.
A missing extra is a :class:`~orchestrator.errors.MissingExtraError` naming the pip command,
never an ``ImportError`` traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from orchestrator.errors import MissingExtraError

__all__ = ["require_extra"]


def require_extra(module: str, *, package: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` (from the PyPI ``package`` in ``mco[extra]``), needed for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(package, extra, purpose=purpose) from exc
