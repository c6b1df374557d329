"""Analysis rules: the gate's syntax (``METRIC OP NUMBER``) over the live metric names.

A rule whose metric has too few samples in the window neither passes nor fails: it is
*inconclusive* (Argo Rollouts' word), and the waves strategy waits for more traffic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.model.gate import _OPS, Requirement, parse_requirement

__all__ = ["LIVE_METRICS", "RuleCheck", "check_rules", "known_metric_names", "parse_rule", "validate_rules"]

# Measured on every answer (router side), and what each needs to be judged.
TRAFFIC_METRICS = ("error_rate", "p50_ms", "p95_ms", "p99_ms", "requests")
DRIFT_METRICS = ("class_drift_psi", "proba_drift_psi")
# against the other clouds' previous release in the same window (monitoring/live.peer_drift)
PEER_METRICS = ("peer_class_drift_psi", "peer_proba_drift_psi")
# The gate's own names (model/evaluate.flatten_metrics), computed on feedback pairs, prefixed live_.
_GATE_FIXED = ("accuracy", "log_loss", "roc_auc_ovr_macro",
               *(f"{avg}_{m}" for avg in ("macro", "micro", "weighted") for m in ("precision", "recall", "f1")),
               *(f"min_class_{m}" for m in ("precision", "recall", "f1")))
LIVE_METRICS = (*TRAFFIC_METRICS, *DRIFT_METRICS, *PEER_METRICS, "feedback", *(f"live_{n}" for n in _GATE_FIXED))
_PER_CLASS = re.compile(r"^live_class_[A-Za-z0-9_.\-]+_(precision|recall|f1|roc_auc)$")


def known_metric_names() -> str:
    return ", ".join(LIVE_METRICS) + ", live_class_<label>_<precision|recall|f1>"


def parse_rule(text: str) -> Requirement:
    req = parse_requirement(text)
    if req.metric not in LIVE_METRICS and not _PER_CLASS.match(req.metric):
        raise ConfigError(f"analysis rule '{text}' names an unknown metric '{req.metric}'",
                          hint=f"known metrics: {known_metric_names()}")
    return req


def validate_rules(texts: list[str]) -> list[str]:
    for text in texts:
        parse_rule(text)
    return texts


def _samples_for(metric: str, live: dict[str, Any]) -> int:
    if metric.startswith("live_") or metric == "feedback":
        return int(live.get("feedback") or 0)
    if metric in PEER_METRICS and live.get("peers"):  # the smaller side of the comparison
        return min(int(live.get("requests") or 0), int(live.get("peer_requests") or 0))
    return int(live.get("requests") or 0)


@dataclass(frozen=True)
class RuleCheck:
    rule: str
    metric: str
    value: float | None
    samples: int
    verdict: str  # passed | failed | inconclusive | not_applicable (a peer rule with no peer: passes)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "metric": self.metric, "value": self.value, "samples": self.samples,
                "verdict": self.verdict}


def check_rules(rules: list[str], live: dict[str, Any], *, min_samples: int) -> list[RuleCheck]:
    """Judge ``rules`` against one cloud/release's live metrics (``monitoring.live.live_metrics``)."""
    out = []
    for text in rules:
        req = parse_rule(text)
        samples = _samples_for(req.metric, live)
        value = live.get("metrics", {}).get(req.metric)
        if req.metric in PEER_METRICS and "peers" in live and not live["peers"] and samples >= min_samples:
            # no other cloud serves another release (the last wave): nothing to compare with
            out.append(RuleCheck(str(req), req.metric, None, samples, "not_applicable"))
            continue
        if samples < min_samples or value is None:
            out.append(RuleCheck(str(req), req.metric, value, samples, "inconclusive"))
            continue
        ok = _OPS[req.op](float(value), req.threshold)
        out.append(RuleCheck(str(req), req.metric, float(value), samples, "passed" if ok else "failed"))
    return out
