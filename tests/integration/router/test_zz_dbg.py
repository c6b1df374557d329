import asyncio, json, time
import pytest
from orchestrator.config import RouterRetryConfig
from orchestrator.router.loadgen import run_load
from tests.integration.router.conftest import router_config, kinds

@pytest.mark.parametrize("fault,hedge", [("http503", True), ("hang", False), ("reset_mid", True)])
def test_dbg(fault, hedge, proxies, start_router):
    router = start_router(router_config([p.url for p in proxies], retries=RouterRetryConfig(per_try_timeout_s=0.5, hedge=hedge)))
    primary = proxies[0]
    rate = 300 if hedge else 100
    result = asyncio.run(run_load(router.url + "/v1/predict", rate=rate, duration=4.0,
                                  events={1.0: lambda: primary.set_mode(fault, delay=2.0), 3.0: lambda: primary.set_mode("pass")}))
    print("\n", fault, hedge, result.summary())
    print([(round(s.sent,3), round(s.latency,3), s.status, s.cloud, s.error) for s in result.errors[:5]])
    print([(round(s.sent,3), round(s.latency,3), s.status, s.cloud) for s in result.samples if s.latency > 0.6][:10])
    for e in router.events():
        print(round(e["ts"] - result.started_at, 3), e["kind"], e["target"], e["detail"])
    st = router.status()
    print(json.dumps(st["overall"]["client_errors"]), st["saturation"], [(t["name"], t["errors"], t["hedges"], t["retries"]) for t in st["targets"]])
    deadline = time.monotonic() + 15
    while ("failback", "aws") not in kinds(router.events()) and time.monotonic() < deadline:
        time.sleep(0.1)
    after = asyncio.run(run_load(router.url + "/v1/predict", rate=300, duration=1.0))
    print("after", after.summary(), [(s.status, s.error) for s in after.errors[:3]])
    st = router.status()
    print(json.dumps(st["overall"]["client_errors"]), st["saturation"], [(t["name"], t["errors"], t["hedges"], t["retries"], t["p95_ms"]) for t in st["targets"]])
