"""The evaluation gate: thresholds on report metrics, e.g. ``macro_f1>=0.95``."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.model.evaluate import flatten_metrics

__all__ = ["GateResult", "Requirement", "check_gate", "parse_requirement"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
}
_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(>=|<=|==|>|<)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")


@dataclass(frozen=True)
class Requirement:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: list[dict[str, Any]]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["passed"]]

    def summary(self) -> str:
        if self.passed:
            return "gate passed: " + ", ".join(c["requirement"] for c in self.checks)
        return "gate failed: " + "; ".join(
            f"{c['metric']} is {c['value']:.4f}, needs {c['op']} {c['threshold']:g}"
            if c["value"] is not None else f"{c['metric']} is not in the report"
            for c in self.failures
        )


def parse_requirement(text: str) -> Requirement:
    match = _REQ.match(text)
    if not match:
        raise ConfigError(f"cannot read gate requirement '{text}'",
                          hint='write METRIC OP NUMBER, e.g. "macro_f1>=0.95" or "log_loss<0.2"')
    return Requirement(match.group(1), match.group(2), float(match.group(3)))


def check_gate(report: dict[str, Any], requirements: list[Requirement]) -> GateResult:
    flat = flatten_metrics(report)
    checks = []
    for req in requirements:
        if req.metric not in flat:
            known = ", ".join(k for k in flat if not k.startswith("class_"))
            raise ConfigError(f"gate metric '{req.metric}' is not in the evaluation report",
                              hint=f"known metrics: {known}, and class_<label>_<precision|recall|f1|roc_auc>")
        value = flat[req.metric]
        ok = _OPS[req.op](value, req.threshold)
        checks.append({"requirement": str(req), "metric": req.metric, "op": req.op,
                       "threshold": req.threshold, "value": value, "passed": bool(ok)})
    return GateResult(all(c["passed"] for c in checks), checks)
