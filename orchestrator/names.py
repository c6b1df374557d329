"""Relative names that stay inside their directory: one rule for bundle files and store keys.

Below every layer: ``model.bundle`` (what a card may list) and ``providers.base`` (what a store
key may hold) both ask it."""

from __future__ import annotations

__all__ = ["unsafe_name_reason"]


def unsafe_name_reason(rel: str) -> str | None:
    """Why ``rel`` could name something outside its directory, or None for a plain relative path."""
    if not rel:
        return "is empty"
    if rel.startswith("/"):
        return "is absolute"
    if "\\" in rel or "\0" in rel:
        return "contains a backslash or NUL"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "has an empty, '.' or '..' segment"
    return None
