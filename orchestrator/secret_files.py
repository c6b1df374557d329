"""Reading a secret from a file: the one place that decides whether the file is safe to trust.

A secret file that others can read has leaked already, and a short token can be guessed; both
are refused with a ``ConfigError`` saying how to fix the file. Used for the registry password
file and the router's admin token file."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import ConfigError

__all__ = ["read_secret_file"]


def read_secret_file(path: Path, *, what: str, hint: str, min_bytes: int = 0) -> str:
    """The stripped content of ``path`` once it is readable by its owner only (no group or other
    bits) and, with ``min_bytes``, at least that long. ``what`` names it in errors ("the registry
    password file"); ``hint`` says where it comes from when it cannot be read."""
    try:
        mode = path.stat().st_mode & 0o777
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror})", hint=hint) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text", hint=hint) from None
    if mode & 0o077:
        raise ConfigError(f"{what} {path} is readable by others (mode {mode:o})", hint=f"chmod 600 {path}")
    if len(value.encode()) < min_bytes:
        raise ConfigError(f"{what} {path} holds {len(value.encode())} bytes; at least {min_bytes} are needed",
                          hint="put a random secret in it, e.g. `python -c 'import secrets; "
                               "print(secrets.token_urlsafe(32))'`, with mode 600")
    return value
