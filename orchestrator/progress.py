"""Progress reports from the layers below the CLI: a callback handed in, never printed here.

Long work (a build, a push to three registries, a rollout) reports what it is doing by
calling ``progress(subject, message)``: ``subject`` is what the message is about (an image,
a cloud), ``message`` one short line of plain text. The CLI hands in a callback that draws
one live line per subject (``ProgressLines`` in the CLI's ``_common`` module); tests and scripts
hand in ``quiet`` or collect the messages.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressFn", "quiet"]

ProgressFn = Callable[[str, str], None]  # (subject, message); may be called from worker threads


def quiet(subject: str, message: str) -> None:
    """A ``ProgressFn`` that reports nothing."""
