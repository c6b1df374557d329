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


def test_history_shows_each_wave_and_where_a_waves_deploy_stopped(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    import yaml

    config = tmp_path / "mco.yaml"
    config.write_text(yaml.safe_dump({"project": {"name": "svc", "state_dir": "state"}}))
    (tmp_path / "state").mkdir()
    with ReleaseStore(tmp_path / "state" / "releases.db", "svc") as store:
        n = store.begin(kind="deploy", model_digest="1" * 64, clouds={c: _plan() for c in ("aws", "gcp", "azure")})
        store.set_analysis(n, {"status": "rolled_back", "waves": [
            {"wave": 1, "clouds": ["aws"], "status": "rolled_back", "steps": [{"percent": 10}]}],
            "abort": {"wave": 1, "reason": "live_macro_f1 is 0.02 on aws, needs >=0.7"}})
        store.update_cloud(n, "aws", status="rolled_back", reason="AnalysisFailed")
        for cloud in ("gcp", "azure"):
            store.update_cloud(n, cloud, status="skipped", reason="NotStarted")
        store.finish(n)
    argv = [sys.executable, "-m", "orchestrator.cli.main", "history", "--config", str(config)]
    table = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    text = " ".join(table.stdout.split())
    assert "waves: aws ↩ (10 %); stopped: live_macro_f1 is 0.02 on aws, needs >=0.7" in text, table.stdout
    data = json.loads(subprocess.run([*argv, "--output", "json"], capture_output=True, text=True, timeout=60).stdout)
    assert data["releases"][0]["waves"]["abort"]["wave"] == 1


def test_a_lease_past_its_until_counts_as_left_by_a_dead_deploy() -> None:
    from datetime import UTC, datetime, timedelta

    from orchestrator.releases.pipeline import lease_expired

    now = datetime.now(UTC)
    assert lease_expired({"until": (now - timedelta(seconds=5)).isoformat(timespec="seconds")})
    assert not lease_expired({"until": (now + timedelta(seconds=60)).isoformat(timespec="seconds")})
    assert not lease_expired({"until": (now - timedelta(seconds=5)).isoformat()}, skew_s=30)
    assert not lease_expired({"until": None}) and not lease_expired(None)  # the file lock: no expiry
    assert not lease_expired({"until": "not a time"})
