"""A separate process that takes the deploy lease and writes history, for the state tests.

    hold  --config C [--seconds S] [--wait W]
                                       take the lock (waiting up to W s), begin a release, mark its cloud applying
                                       every 0.2 s for S seconds, finish. Prints ``held <fence>``
                                       once holding; exits 3 printing ``fenced`` if a write is refused
    ops   --config C --count N [--wait W] [--start-at T] [--hold S]
                                       N times: take the lock (waiting up to W s), recover any
                                       interrupted release, append one release, keep the lock S s,
                                       release it. ``{"ready": pid}`` first (imports done), then
                                       one JSON line per outcome: {"ack": n, "tag": t} once the
                                       record is committed, {"fail": kind, "message": m} otherwise

Lines are flushed as they happen, so a test reading stdout knows what was acknowledged
even if it kills the process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

from orchestrator.config import load_config
from orchestrator.errors import LeaseLost, LockHeld, MCOError
from orchestrator.releases.state.objectstore import ObjectBackend, ObjectHistory
from orchestrator.releases.store import CloudPlan

__all__ = ["main"]


def _plan(tag: str) -> CloudPlan:
    return CloudPlan(model_digest=tag, image_ref=f"img@sha256:{tag}", image_digest=f"sha256:{tag}", overlay="kind",
                     replicas=1, manifests=[{"kind": "Deployment", "metadata": {"name": "model", "tag": tag}}])


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def hold(config: str, seconds: float, wait: float) -> int:
    backend = ObjectBackend(load_config(config))
    history = ObjectHistory(backend)
    try:
        with backend.lock(wait_s=wait, purpose="deploy", poll_s=0.2) as lease:
            history.recover_interrupted()
            tag = uuid.uuid4().hex + uuid.uuid4().hex
            number = history.begin(kind="deploy", model_digest=tag, clouds={"aws": _plan(tag)})
            print(f"held {lease.fence_number} {number}", flush=True)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                history.update_cloud(number, "aws", status="applying", detail=f"{time.time():.3f}")
                time.sleep(0.2)
            history.update_cloud(number, "aws", status="deployed")
            history.finish(number)
        print("done", flush=True)
        return 0
    except LeaseLost as exc:
        print(f"fenced {exc.message}", flush=True)
        return 3
    finally:
        backend.close()


def ops(config: str, count: int, wait: float, start_at: float | None, poll: float, hold_s: float = 0.0) -> int:
    backend = ObjectBackend(load_config(config))
    history = ObjectHistory(backend)
    _say(ready=os.getpid())
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    failures = 0
    try:
        for _ in range(count):
            tag = f"{os.getpid():08x}" + uuid.uuid4().hex + uuid.uuid4().hex[:24]
            try:
                with backend.lock(wait_s=wait, purpose="deploy", poll_s=poll):
                    history.recover_interrupted()
                    number = history.begin(kind="deploy", model_digest=tag, clouds={"aws": _plan(tag)})
                    _say(ack=number, tag=tag, at=time.time())
                    time.sleep(hold_s)
            except LockHeld as exc:
                failures += 1
                _say(fail="LockHeld", message=exc.message)
            except MCOError as exc:
                failures += 1
                _say(fail=type(exc).__name__, message=exc.message)
                time.sleep(0.2)
    finally:
        backend.close()
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.testing.state_worker")
    sub = parser.add_subparsers(dest="mode", required=True)
    h = sub.add_parser("hold")
    h.add_argument("--config", required=True)
    h.add_argument("--seconds", type=float, default=30.0)
    h.add_argument("--wait", type=float, default=0.0)
    o = sub.add_parser("ops")
    o.add_argument("--config", required=True)
    o.add_argument("--count", type=int, default=1)
    o.add_argument("--wait", type=float, default=0.0)
    o.add_argument("--start-at", type=float, default=None)
    o.add_argument("--poll", type=float, default=0.5)
    o.add_argument("--hold", type=float, default=0.0, help="seconds to keep the lock after each append")
    args = parser.parse_args(argv)
    if args.mode == "hold":
        return hold(args.config, args.seconds, args.wait)
    return ops(args.config, args.count, args.wait, args.start_at, args.poll, args.hold)


if __name__ == "__main__":
    sys.exit(main())
