"""The dry-run diff ignores what only the server writes."""

from __future__ import annotations

from orchestrator.kube.client import diff_objects, strip_server_fields


def _svc(port: int, **meta: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m", "namespace": "mco", **meta},
            "spec": {"ports": [{"port": port}]}, "status": {"loadBalancer": {}}}


def test_server_fields_do_not_count_as_changes() -> None:
    live = _svc(80, uid="1", resourceVersion="5", managedFields=[{"manager": "mco"}], creationTimestamp="t")
    planned = _svc(80, uid="1", resourceVersion="6", managedFields=[{"manager": "mco"}, {"manager": "x"}])
    assert diff_objects(live, planned, label="Service/m") == ""
    assert "status" not in strip_server_fields(live)


def test_a_real_change_shows_as_a_unified_diff() -> None:
    text = diff_objects(_svc(80), _svc(8080), label="Service/m")
    assert "--- live/Service/m" in text and "+++ planned/Service/m" in text
    assert "-  - port: 80" in text and "+  - port: 8080" in text


def test_a_new_object_diffs_against_nothing() -> None:
    text = diff_objects(None, _svc(80), label="Service/m")
    assert text.count("\n+") >= 5 and "\n-" not in text.replace("--- live", "")
