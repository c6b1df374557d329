"""The one exception tree of mco.

Every error a user can see is one of these. Library and SDK errors are translated
at the boundary (``raise ... from exc``) so the CLI can print a message that names
the problem and the fix, and never a traceback.

    MCOError                      -- anything mco reports to a user
    ├── ConfigError               -- mco.yaml is malformed or inconsistent
    ├── ModelError                -- a model or bundle cannot be trained, read or trusted
    │   ├── ExportError           -- a model cannot be exported to ONNX
    │   └── IntegrityError        -- a digest does not match what was recorded
    ├── GateError                 -- a model fails its evaluation gate
    ├── MissingExtraError         -- an optional dependency is not installed
    ├── NotBuiltError             -- a binary mco builds itself (the Rust data plane) is not built
    ├── CapabilityError           -- a provider cannot do what was asked
    ├── ProviderError             -- a cloud (or its stand-in) refused or failed
    │   ├── AccessDenied
    │   ├── NotFound              -- bucket, container, repository or object missing
    │   ├── Throttled
    │   ├── Unreachable           -- network, DNS, connection refused, timeout
    │   └── PreconditionFailed    -- a conditional write lost: the object exists, or changed
    ├── ClusterError              -- a Kubernetes cluster refused or failed
    │   ├── ClusterUnreachable    -- its API server did not answer (refused, timed out, reset, DNS)
    │   └── RolloutFailed
    ├── ReleaseError              -- release history and locks
    │   ├── LockHeld
    │   ├── LeaseLost             -- this process's lease expired or was taken over (fenced)
    │   └── StateUnavailable      -- no majority of the state stores answered
    └── DrillFailed               -- a drill missed an objective
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "CapabilityError",
    "ClusterError",
    "ClusterUnreachable",
    "ConfigError",
    "DrillFailed",
    "ExportError",
    "GateError",
    "IntegrityError",
    "LeaseLost",
    "LockHeld",
    "MCOError",
    "MissingExtraError",
    "ModelError",
    "NotBuiltError",
    "NotFound",
    "PreconditionFailed",
    "ProviderError",
    "ReleaseError",
    "RolloutFailed",
    "StateUnavailable",
    "Throttled",
    "Unreachable",
]


class MCOError(Exception):
    """Base of every error mco reports. ``hint`` says how to fix it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message


class ConfigError(MCOError):
    exit_code = 2


class ModelError(MCOError):
    pass


class ExportError(ModelError):
    pass


class IntegrityError(ModelError):
    pass


class GateError(MCOError):
    pass


class MissingExtraError(MCOError):
    def __init__(self, package: str, extra: str, *, purpose: str = "") -> None:
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"the Python package '{package}' is not installed{what}",
            hint=f"pip install 'mco[{extra}]'",
        )
        self.package = package
        self.extra = extra


class NotBuiltError(MCOError):
    """A binary mco builds from its own sources (e.g. the router's Rust data plane) is missing."""

    exit_code = 2


class CapabilityError(MCOError):
    pass


class ProviderError(MCOError):
    """A cloud refused or failed. ``cloud`` names which one."""

    def __init__(self, message: str, *, cloud: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.cloud = cloud


class AccessDenied(ProviderError, PermissionError):
    pass


class NotFound(ProviderError, FileNotFoundError):
    pass


class Throttled(ProviderError):
    pass


class Unreachable(ProviderError, ConnectionError):
    pass


class PreconditionFailed(ProviderError):
    """A conditional write was refused: create-if-absent found the object, or its version changed."""


class ClusterError(MCOError):
    pass


class ClusterUnreachable(ClusterError, ConnectionError):
    """No answer from the API server: the transport failed, not the request."""


class RolloutFailed(ClusterError):
    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class ReleaseError(MCOError):
    pass


class LockHeld(ReleaseError):
    pass


class LeaseLost(ReleaseError):
    """The deploy lease expired or another holder took it: this process may not write history."""


class StateUnavailable(ReleaseError):
    """Fewer than a majority of the state stores answered. ``unreachable`` names the others."""

    def __init__(self, message: str, *, unreachable: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.unreachable = unreachable


class DrillFailed(MCOError):
    pass
