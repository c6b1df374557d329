"""The generated Dockerfile: layer order, offline install, non-root, pinned digest."""

from __future__ import annotations

from orchestrator.packaging.dockerfile import DockerfileSpec, render_dockerfile

DIGEST = "ab" * 32


def spec(**kw: object) -> DockerfileSpec:
    base: dict[str, object] = {
        "base_image": "mco-base/bookworm:latest", "python": "/usr/bin/python3", "uid": 10001,
        "mco_wheel_name": "mco-0.1.0-py3-none-any.whl", "bundle_digest": DIGEST, "model_name": "digits",
        "mco_version": "0.1.0", "labels": {"dev.mco.bundle.digest": f"sha256:{DIGEST}"}}
    base.update(kw)
    return DockerfileSpec(**base)  # type: ignore[arg-type]


def test_baked_image_layers_go_from_stable_to_volatile() -> None:
    text = render_dockerfile(spec())
    order = [text.index(s) for s in ("COPY --from=deps", "COPY --from=app", "COPY model/", "MCO_MODEL_DIGEST=")]
    assert order == sorted(order)
    assert "--no-index" in text and "--find-links /wheels" in text
    assert "USER 10001:10001" in text and "HEALTHCHECK" in text
    assert f"MCO_MODEL_DIGEST=sha256:{DIGEST}" in text
    assert '"dev.mco.bundle.digest"="sha256:' in text
    # The final stage must not contain the wheelhouse or pip.
    final = text.split("\nFROM mco-base/bookworm:latest\n")[-1]
    assert "/wheels" not in final and "pip install" not in final


def test_fetch_image_has_no_model_layer_and_a_writable_model_dir() -> None:
    text = render_dockerfile(spec(model_source="fetch"))
    assert "COPY model/" not in text
    assert "MCO_MODEL_SOURCE=fetch MCO_MODEL_DIR=/tmp/mco-model" in text


def test_same_inputs_same_dockerfile() -> None:
    assert render_dockerfile(spec()) == render_dockerfile(spec())
    assert render_dockerfile(spec()) != render_dockerfile(spec(bundle_digest="cd" * 32))
