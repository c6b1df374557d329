"""What the history keeps of a waves deploy: the analysis record and clouds never touched."""

from __future__ import annotations

from pathlib import Path

from orchestrator.releases.store import CloudPlan, ReleaseStore


def _plan() -> CloudPlan:
    return CloudPlan(model_digest="1" * 64, image_ref="sha256:" + "a" * 64, image_digest=None, overlay="kind",
                     replicas=1, manifests=[])


def test_a_stopped_waves_deploy_is_rolled_back_with_later_clouds_skipped(tmp_path: Path) -> None:
    with ReleaseStore(tmp_path / "releases.db", "svc") as store:
        n = store.begin(kind="deploy", model_digest="1" * 64, clouds={c: _plan() for c in ("aws", "gcp", "azure")})
        doc = {"status": "rolled_back", "abort": {"wave": 1, "check": {"metric": "live_macro_f1", "value": 0.02}}}
        store.set_analysis(n, {"status": "in_progress"})
        store.set_analysis(n, doc)  # replaced after every step
        store.update_cloud(n, "aws", status="rolled_back", reason="AnalysisFailed", detail="live_macro_f1 is 0.02")
        store.update_cloud(n, "gcp", status="skipped", reason="NotStarted", detail="wave 1 failed")
        store.update_cloud(n, "azure", status="skipped", reason="NotStarted", detail="wave 1 failed")
        release = store.finish(n)
        assert release.status == "rolled_back"
        summary = release.summary()
        assert summary["waves"] == doc and summary["clouds"]["gcp"]["status"] == "skipped"
        assert store.current("gcp") is None


def test_skipped_clouds_make_a_release_partial_when_others_deployed(tmp_path: Path) -> None:
    with ReleaseStore(tmp_path / "releases.db", "svc") as store:
        n = store.begin(kind="deploy", model_digest="1" * 64, clouds={c: _plan() for c in ("aws", "gcp")})
        store.update_cloud(n, "aws", status="deployed")
        assert store.get(n).status == "in_progress"
        store.update_cloud(n, "gcp", status="skipped")
        assert store.finish(n).status == "partial"
        assert store.get(n).analysis is None and "waves" not in store.get(n).summary()


def test_a_history_written_before_waves_existed_opens_and_gains_the_table(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "releases.db"
    with ReleaseStore(path, "svc") as store:
        n = store.begin(kind="deploy", model_digest="1" * 64, clouds={"aws": _plan()})
    db = sqlite3.connect(path)
    db.execute("DROP TABLE release_analysis")
    db.commit()
    db.close()
    with ReleaseStore(path, "svc") as store:
        assert store.get(n).analysis is None
        store.set_analysis(n, {"status": "deployed"})
        assert store.get(n).summary()["waves"] == {"status": "deployed"}
