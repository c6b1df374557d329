"""mco: one model, served from several clouds, surviving the loss of any one of them."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
