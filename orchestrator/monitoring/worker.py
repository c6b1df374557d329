"""The gate's metrics on labelled answers, computed in a child process of the router.

scikit-learn (with SciPy) adds about 150 MB to a process and takes seconds to import, holding
the GIL the whole time. The router imports neither: the first time the live metrics have
labelled rows, ``ReportWorker`` starts ``python -m orchestrator.monitoring.worker``, which
imports them once and then answers one JSON line per request on its pipes:

    → {"y_true": [...], "y_pred": [...], "proba": [[...], ...], "classes": [...]}
    ← {"report": <model.evaluate.evaluation_report>}  or  {"error": "...", "missing": "<extra>"}

JSON (never pickle) both ways; floats survive the round trip exactly, so the router's live
metrics equal scikit-learn's on the same pairs. A router that never gets feedback never starts
the worker. The worker reads its requests from the router, so it ends when the router does,
even after ``kill -9`` (its stdin closes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import IO, Any

from orchestrator.errors import MCOError, MissingExtraError

__all__ = ["ReportWorker", "main"]

_TIMEOUT_S = 60.0  # the first answer includes scikit-learn's import


class ReportWorker:
    """``evaluate(y_true, y_pred, proba, classes)`` answered by the child process (started on
    first use, restarted if it died). Blocking: call it from a worker thread, as the live
    metrics' refresh does; waiting on the pipe does not hold the GIL."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([sys.executable, "-m", "orchestrator.monitoring.worker"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return self._proc

    def evaluate(self, y_true: Any, y_pred: Any, proba: Any, classes: list[Any]) -> dict[str, Any]:
        request = json.dumps({"y_true": _plain(y_true), "y_pred": _plain(y_pred), "proba": _plain(proba),
                              "classes": _plain(classes)}).encode() + b"\n"
        with self._lock:
            proc = self._started()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                line = _readline(proc.stdout, _TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                self._kill()
                raise MCOError(f"the live-metrics worker failed: {exc or type(exc).__name__}",
                               hint="the next refresh starts a new one") from None
        answer = json.loads(line)
        if "report" in answer:
            return dict(answer["report"])
        if answer.get("missing"):
            raise MissingExtraError(answer["missing"], "monitor", purpose="live metrics on feedback")
        raise MCOError(f"the live-metrics worker refused the rows: {answer.get('error')}")

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
            self._proc = None

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.stdin is not None:
                self._proc.stdin.close()  # the worker ends at end of input
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            self._kill()


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _readline(stream: IO[bytes], timeout: float) -> bytes:
    """One line from the worker, or ``TimeoutError``; EOF (the worker died) is an ``OSError``."""
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise TimeoutError(f"no answer in {timeout:.0f} s")
    if not got or not got[0]:
        raise OSError("the worker exited")
    return got[0]


def main() -> int:
    try:
        import numpy as np
        import sklearn.metrics  # noqa: F401  (imported once, here, not per request)

        from orchestrator.model.evaluate import evaluation_report
    except ImportError as exc:
        missing = "scikit-learn" if "sklearn" in str(exc.name) else str(exc.name)
        for _ in sys.stdin.buffer:
            sys.stdout.write(json.dumps({"error": str(exc), "missing": missing}) + "\n")
            sys.stdout.flush()
        return 0
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            report = evaluation_report(np.asarray(req["y_true"]), np.asarray(req["y_pred"]),
                                       np.asarray(req["proba"], dtype=np.float64), list(req["classes"]))
            out = {"report": report}
        except (ValueError, KeyError, TypeError) as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
