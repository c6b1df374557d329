"""``Release``: a Pulumi resource that is one record in mco's release history.

It is a dynamic resource whose provider writes ``orchestrator.releases`` (the same
SQLite history ``mco deploy`` writes, through the same writer, ``releases.plan.record_applied``),
under mco's per-service deploy lock. Creating it
records a release; changing what is deployed records the next one; destroying the
stack leaves history alone, as history is append-only. A ``pulumi up`` that changes
nothing changes no input here, so it records nothing, like a no-op ``mco deploy``.

Its inputs are plain data (manifests as JSON text), so the record is exactly what
Pulumi applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic as dyn

__all__ = ["Release", "ReleaseArgs", "ReleaseProvider", "record_release"]


@dataclass(frozen=True)
class ReleaseArgs:
    state_dir: str              # absolute: <project>/.mco (project.state_dir of the mco config)
    service: str                # project.name of the mco config
    planned_number: int         # the number the manifests were rendered with
    model_digest: str
    bundle_ref: str | None
    # cloud -> {image_ref, image_digest, overlay, replicas, manifests (JSON text), endpoint}
    clouds: dict[str, dict[str, Any]]
    lock_wait_s: float = 60.0


def record_release(props: dict[str, Any]) -> int:
    """Write one deployed release into the history; returns its number.

    Plain function (no Pulumi) so tests and the dynamic provider share it.
    """
    from pathlib import Path

    from orchestrator.releases.lock import DeployLock
    from orchestrator.releases.plan import record_applied
    from orchestrator.releases.store import CloudPlan, ReleaseStore

    state_dir = Path(props["state_dir"])
    with DeployLock(state_dir, props["service"], wait_s=float(props.get("lock_wait_s", 60.0)), purpose="pulumi up"):
        with ReleaseStore(state_dir / "releases.db", props["service"]) as store:
            plans = {
                cloud: CloudPlan(
                    model_digest=props["model_digest"], image_ref=c["image_ref"], image_digest=c.get("image_digest"),
                    overlay=c["overlay"], replicas=int(c["replicas"]), manifests=json.loads(c["manifests"]),
                    endpoint=c.get("endpoint"),
                )
                for cloud, c in props["clouds"].items()
            }
            # Pulumi's Kubernetes provider returns only once the Deployment is ready: deployed.
            # Already recorded (a refresh, a retried update, an unchanged plan): nothing is written.
            return record_applied(store, planned=int(props["planned_number"]), model_digest=props["model_digest"],
                                  clouds=plans, bundle_ref=props.get("bundle_ref"), created_by=_who(),
                                  detail="applied by pulumi up")


def _who() -> str:
    from orchestrator.releases.store import current_user

    return f"{current_user()} (pulumi)"


class ReleaseProvider(dyn.ResourceProvider):
    """CRUD for ``Release``; runs inside Pulumi's dynamic-provider process."""

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        number = record_release(props)
        return dyn.CreateResult(id_=f"{props['service']}/{number}", outs={**props, "number": number})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        keys = ("planned_number", "model_digest", "clouds", "service", "state_dir")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return dyn.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        number = record_release(news)
        return dyn.UpdateResult(outs={**news, "number": number})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # history is append-only


class Release(dyn.Resource, module="mco", name="Release"):
    """One record in mco's history; type ``pulumi-python:dynamic/mco:Release``."""

    number: pulumi.Output[int]

    def __init__(self, name: str, args: ReleaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "state_dir": args.state_dir,
            "service": args.service,
            "planned_number": args.planned_number,
            "model_digest": args.model_digest,
            "bundle_ref": args.bundle_ref,
            "clouds": args.clouds,
            "lock_wait_s": args.lock_wait_s,
            "number": None,
        }
        super().__init__(ReleaseProvider(), name, props, opts)
