"""``GlobalEntry`` under Pulumi's mocks: health checks on each router's /readyz/local, low-TTL records."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from tests.unit.infra.conftest import RecordingMocks, RecordingMonitor

pytestmark = pytest.mark.timeout(120)

ENDPOINTS = [("aws", "router.aws.example.com", "us-east-1"), ("gcp", "router.gcp.example.com", "us-east-2"),
             ("azure", "router.azure.example.com", "us-east-1")]


def _run(**overrides: Any) -> tuple[RecordingMocks, dict[str, Any]]:
    from pulumi.runtime import settings

    from components.global_entry import GlobalEntry, GlobalEntryArgs, RouterEndpoint

    mocks = RecordingMocks()
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="mco-infra", stack="aws", preview=False, monitor=RecordingMonitor(mocks))
    args = {"zone_id": "Z123", "record_name": "model.example.com",
            "endpoints": tuple(RouterEndpoint(c, f, r) for c, f, r in ENDPOINTS), **overrides}
    out: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        entry = GlobalEntry("entry", GlobalEntryArgs(**args))
        return pulumi.Output.all(entry.url, entry.health_check_ids, entry.record_fqdns).apply(
            lambda v: out.update(url=v[0], checks=v[1], fqdns=v[2]))

    program()
    return mocks, out


def _of(mocks: RecordingMocks, typ: str) -> list[Any]:
    return [r for r in mocks.resources if r.typ == typ]


def test_latency_routing_has_a_health_checked_low_ttl_record_per_cloud() -> None:
    mocks, out = _run()
    checks = _of(mocks, "aws:route53/healthCheck:HealthCheck")
    assert {c.inputs["fqdn"] for c in checks} == {f for _, f, _ in ENDPOINTS}
    for c in checks:
        assert c.inputs["type"] == "HTTPS" and c.inputs["resourcePath"] == "/readyz/local"
        assert c.inputs["requestInterval"] == 10 and c.inputs["failureThreshold"] == 2 and c.inputs["enableSni"]
    records = _of(mocks, "aws:route53/record:Record")
    assert len(records) == 3
    for r in records:
        assert r.inputs["name"] == "model.example.com" and r.inputs["ttl"] == 30 and r.inputs["type"] == "CNAME"
        assert r.inputs["healthCheckId"].endswith("-check-id")
        assert r.inputs["latencyRoutingPolicies"][0]["region"] in ("us-east-1", "us-east-2")
    assert {r.inputs["setIdentifier"] for r in records} == {"aws", "gcp", "azure"}
    assert out["url"] == "https://model.example.com" and set(out["checks"]) == {"aws", "gcp", "azure"}
    comp = [r for r in mocks.resources if r.typ == "mco:dns:GlobalEntry"]
    assert len(comp) == 1


def test_failover_routing_is_a_primary_and_a_latency_secondary() -> None:
    mocks, out = _run(routing="failover")
    records = {r.name: r.inputs for r in _of(mocks, "aws:route53/record:Record")}
    primary, secondary = records["entry-primary"], records["entry-secondary"]
    assert primary["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
    assert primary["records"] == ["router.aws.example.com"] and primary["healthCheckId"]
    assert secondary["failoverRoutingPolicies"] == [{"type": "SECONDARY"}]
    assert secondary["records"] == ["secondary.model.example.com"] and primary["type"] == secondary["type"]
    rest = [r for n, r in records.items() if r["name"] == "secondary.model.example.com"]
    assert {r["setIdentifier"] for r in rest} == {"gcp", "azure"}
    assert out["fqdns"] == ["model.example.com", "secondary.model.example.com"]


@pytest.mark.parametrize("overrides,setting", [
    ({"ttl_s": 300}, "ttl_s=300"),
    ({"health_check_type": "HTTP"}, "health_check_type=HTTP"),
    ({"endpoints": ()}, "endpoints=[]"),
])
def test_unsafe_settings_are_refused_before_any_resource(overrides: dict[str, Any], setting: str) -> None:
    from components._common import InsecureSettingError

    with pytest.raises(InsecureSettingError) as err:
        _run(**overrides)
    assert setting in str(err.value) and "fix:" in str(err.value)


def test_the_aws_stack_builds_it_from_stack_config() -> None:
    from tests.unit.infra.conftest import run_stack

    run = run_stack("aws", {"mco-infra:globalEntry": {
        "zoneId": "Z9", "recordName": "m.example.com",
        "endpoints": [{"cloud": c, "fqdn": f, "latencyRegion": r} for c, f, r in ENDPOINTS]}})
    assert len(run.of_type("aws:route53/healthCheck:HealthCheck")) == 3
    assert run.outputs["global_entry"] == "https://m.example.com"
