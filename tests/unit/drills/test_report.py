"""Drill reports: files, timeline buckets, health spans, and a self-contained HTML page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from orchestrator.drills.report import health_intervals, markers_from, per_second, write_report
from orchestrator.testing.traffic import RequestRecord, _model_digest

CLOUDS = ("aws", "gcp", "azure")


def test_per_second_buckets_answers_by_cloud_and_errors() -> None:
    recs = [RequestRecord(10.1, 0.002, 200, "aws"), RequestRecord(10.5, 0.004, 200, "aws"),
            RequestRecord(11.2, 0.01, 200, "gcp"), RequestRecord(11.3, 0.0, 0, None, "connect refused"),
            RequestRecord(50.0, 0.01, 200, "gcp")]  # outside the window: ignored
    s = per_second(recs, 10.0, 12.0, CLOUDS)
    assert s["t"] == [0, 1]
    assert s["rps"] == {"aws": [2, 0], "gcp": [0, 1], "azure": [0, 0]}
    assert s["errors"] == [0, 1]
    assert s["p50_ms"][1] == 10.0


def test_health_spans_combine_active_checks_and_ejection() -> None:
    events = [{"ts": 13.0, "kind": "ejection", "target": "aws"},
              {"ts": 14.0, "kind": "health_down", "target": "aws"},
              {"ts": 15.0, "kind": "readmission", "target": "aws"},  # still down by active checks
              {"ts": 17.0, "kind": "health_up", "target": "aws"},
              {"ts": 12.0, "kind": "failover", "target": "gcp"}]
    spans = health_intervals(events, CLOUDS, 10.0, 20.0)
    assert spans["aws"] == [(0.0, 3.0, "up"), (3.0, 4.0, "ejected"), (4.0, 7.0, "down"), (7.0, 10.0, "up")]
    assert spans["gcp"] == [(0.0, 10.0, "up")]


def test_markers_merge_drill_actions_and_router_events_in_time_order() -> None:
    marks = markers_from([{"ts": 5.0, "kind": "failover", "target": "gcp", "detail": {"from": "aws"}},
                          {"ts": 4.0, "kind": "targets_reloaded", "target": None}],
                         [{"ts": 4.5, "kind": "fault", "target": "aws"}])
    assert [m["kind"] for m in marks] == ["fault", "failover"]


def test_write_report_leaves_json_png_html_and_raw_records(tmp_path: Path) -> None:
    recs = [RequestRecord(100 + i / 50, 0.003, 200, "aws" if i < 100 else "gcp") for i in range(300)]
    recs.append(RequestRecord(102.0, 0.0, 503, None, "HTTP 503"))
    events = [{"seq": 1, "ts": 102.01, "kind": "ejection", "target": "aws", "detail": {"reason": "connect"}},
              {"seq": 2, "ts": 102.02, "kind": "failover", "target": "gcp", "detail": {"from": "aws", "to": "gcp"}}]
    report = {"scenario": "cloud-outage", "runtime": "local", "policy": "failover", "passed": False,
              "checks": [{"objective": "client_errors", "limit": 0, "value": 1, "passed": False,
                          "message": "1 client errors (budget 0)"}],
              "measures": {"requests": 301, "client_errors": 1, "rto_seconds": 0.1, "failback_seconds": None,
                           "detection_seconds": 0.01, "latency_ms": {"p50": 3.0, "p99": 3.0},
                           "served_by": {"aws": 100, "gcp": 200}},
              "clouds": [{"name": "aws", "requests": 100, "cost_per_hour": 0.05}]}
    files = write_report(tmp_path, report, recs, events, [{"ts": 102.0, "kind": "fault", "target": "aws"}],
                         start=100.0, end=106.0, clouds=CLOUDS)
    png = Path(files["png"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    doc = json.loads(Path(files["json"]).read_text())
    assert doc["series"]["rps"]["aws"][:2] == [50, 50] and doc["series"]["errors"][2] == 1
    assert [m["kind"] for m in doc["markers"]] == ["fault", "ejection", "failover"]
    assert doc["markers"][0]["t"] == 2.0
    page = Path(files["html"]).read_text()
    assert "FAILED" in page and "1 client errors (budget 0)" in page and "failover" in page
    assert "data:image/png;base64," in page
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r"""(src|href)=["']https?:""", page) and "<script" not in page
    lines = Path(files["csv"]).read_text().splitlines()
    assert lines[0].startswith("sent_unix,latency_s,status,cloud,error") and len(lines) == 302


def test_html_escapes_event_details(tmp_path: Path) -> None:
    events = [{"ts": 101.0, "kind": "ejection", "target": "aws", "detail": {"reason": "<script>alert(1)</script>"}}]
    report = {"scenario": "x", "runtime": "local", "passed": True, "checks": [],
              "measures": {"requests": 0, "client_errors": 0, "rto_seconds": None, "failback_seconds": None,
                           "detection_seconds": None, "latency_ms": {}, "served_by": {}}}
    files = write_report(tmp_path, report, [], events, [], start=100.0, end=102.0, clouds=CLOUDS)
    assert "<script>" not in Path(files["html"]).read_text()


def test_model_digest_is_read_from_the_answer_without_parsing_it() -> None:
    body = b'{"predictions":[4],"probabilities":[[0.1]],"model_digest":"abc123"}'
    assert _model_digest(body) == "abc123"
    assert _model_digest(b'{"error":"bad"}') is None
    assert _model_digest(b'{"model_digest": "spaced"}') == "spaced"
