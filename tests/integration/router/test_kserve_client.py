"""Acceptance: a real Open Inference Protocol client nobody here wrote, the `kserve` SDK's
``InferenceRESTClient``, against `mco serve` directly and through `mco router serve`; it must get
the same labels and probabilities as /v1/predict for the same rows, and a 4xx for a mistake."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig  # the dev extra

from tests.integration.router.conftest import router_config
from tests.integration.serving.test_model_server import _holdout

pytestmark = pytest.mark.timeout(120)


async def _kserve_calls(base_url: str, model: str, rows: np.ndarray) -> tuple[dict, dict, int]:
    async with InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30)) as client:
        assert await client.is_server_live(base_url)
        assert await client.is_server_ready(base_url)
        assert await client.is_model_ready(base_url, model)
        tensor = InferInput(name="X", shape=list(rows.shape), datatype="FP32")
        tensor.set_data_from_numpy(rows.astype(np.float32), binary_data=False)
        answer = await client.infer(base_url, InferRequest(model_name=model, infer_inputs=[tensor],
                                                           request_id="kserve-1"), model_name=model)
        outputs = {o.name: o.as_numpy() for o in answer.outputs}
        meta = {"id": answer.id, "model_name": answer.model_name}
        bad = InferInput(name="X", shape=[rows.shape[0], 63], datatype="FP32")
        bad.set_data_from_numpy(rows[:, :63].astype(np.float32), binary_data=False)
        try:
            await client.infer(base_url, InferRequest(model_name=model, infer_inputs=[bad]), model_name=model)
            status = 200
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
        return outputs, meta, status


def test_kserve_client_gets_v1s_answers_directly_and_through_the_router(servers, start_router, digits_bundle):
    router = start_router(router_config([s.url for s in servers]))
    X, _ = _holdout(digits_bundle)
    rows = X[:16]
    model = digits_bundle.card["name"]
    v1 = httpx.post(servers[0].url + "/v1/predict", json={"instances": rows.tolist()}, timeout=10).json()
    for base_url in (servers[0].url, router.url):
        outputs, meta, status = asyncio.run(_kserve_calls(base_url, model, rows))
        assert meta == {"id": "kserve-1", "model_name": model}
        assert outputs["label"].tolist() == v1["predictions"], base_url
        assert outputs["probabilities"].shape == (16, 10)
        assert outputs["probabilities"].tolist() == v1["probabilities"], base_url
        assert status == 400, base_url
