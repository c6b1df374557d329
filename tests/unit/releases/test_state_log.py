"""The log's rules without a network: records and their checksums, the fold, and which copy a
reader chooses when the stores disagree. The stores here are dictionaries behind the same
``ConditionalStore`` interface (the emulator tests in tests/integration/state/ run the real ones)."""

from __future__ import annotations

import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError, PreconditionFailed, Unreachable
from orchestrator.providers.base import ConditionalStore, Versioned
from orchestrator.releases.state.records import GENESIS, Corrupt, Record, decode, encode, fold
from orchestrator.releases.state.replicas import Replicas


class DictStore(ConditionalStore):
    def __init__(self, name: str) -> None:
        self.cloud = name
        self.endpoint = "memory"
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.down = False
        self._n = 0

    def _up(self) -> None:
        if self.down:
            raise Unreachable(f"{self.cloud} is down", cloud=self.cloud)

    def _version(self) -> str:
        self._n += 1
        return str(self._n)

    def read(self, key: str) -> Versioned | None:
        self._up()
        got = self.objects.get(key)
        return Versioned(*got) if got else None

    def create(self, key: str, data: bytes) -> str:
        self._up()
        if key in self.objects:
            raise PreconditionFailed("exists", cloud=self.cloud)
        self.objects[key] = (data, v := self._version())
        return v

    def replace(self, key: str, data: bytes, *, version: str) -> str:
        self._up()
        if key not in self.objects or self.objects[key][1] != version:
            raise PreconditionFailed("changed", cloud=self.cloud)
        self.objects[key] = (data, v := self._version())
        return v

    def delete_if(self, key: str, *, version: str) -> None:
        self._up()
        if key in self.objects and self.objects[key][1] == version:
            del self.objects[key]

    def versions(self, prefix: str) -> dict[str, str]:
        self._up()
        return {k: v for k, (_d, v) in self.objects.items() if k.startswith(prefix)}

    def where(self) -> str:
        return self.cloud


def _replicas() -> tuple[Replicas, dict[str, DictStore]]:
    stores = {n: DictStore(n) for n in ("aws", "gcp", "azure")}
    return Replicas(dict(stores), "mco/state/svc"), stores


def _rec(seq: int, prev: str, fence: int = 1, type: str = "lease", data: dict | None = None) -> tuple[bytes, Record]:
    return encode(Record(seq=seq, prev=prev, fence=fence, type=type, at="t", by="me", data=data or {}))


def test_a_record_round_trips_and_an_edit_is_caught() -> None:
    payload, rec = _rec(1, GENESIS, data={"x": 1})
    assert decode(payload, seq=1) == rec
    bad = decode(payload.replace(b'"x": 1', b'"x": 2'), seq=1)
    assert isinstance(bad, Corrupt) and "checksum" in bad.reason
    assert isinstance(decode(b"{", seq=1), Corrupt)
    assert "stored as record 2" in decode(payload, seq=2).reason  # type: ignore[union-attr]


def test_the_fold_builds_releases_and_skips_fenced_records() -> None:
    plan = {"model_digest": "m", "image_digest": None, "image_ref": "i", "overlay": "kind", "replicas": 1,
            "manifests": [], "endpoint": None, "source_release": None}
    recs = [_rec(1, GENESIS, 1)[1]]
    recs.append(_rec(2, recs[-1].sha256, 1, "begin", {"number": 1, "kind": "deploy", "model_digest": "m",
                                                     "created_by": "me", "created_at": "t", "clouds": {"aws": plan}})[1])
    recs.append(_rec(3, recs[-1].sha256, 2, "lease")[1])  # a new holder took over
    recs.append(_rec(4, recs[-1].sha256, 1, "cloud", {"number": 1, "cloud": "aws", "fields": {"status": "deployed"}})[1])
    recs.append(_rec(5, recs[-1].sha256, 2, "recover", {"numbers": [1]})[1])
    folded = fold(recs, "svc")
    assert folded.fenced == [4]
    assert folded.release(1).status == "interrupted"


def test_a_majority_commits_and_a_reader_takes_a_lagging_record_with_one_store_down() -> None:
    replicas, stores = _replicas()
    view = replicas.read()
    stores["azure"].down = True
    _rec1, lagging = replicas.append(view, fence=1, type="lease", at="t", by="me", data={})
    assert lagging == ["azure"]
    stores["azure"].down = False
    stores["aws"].down = True  # the record is now on gcp only among the answering stores
    assert [r.seq for r in replicas.read(full=True).records] == [1]


def test_a_copy_on_a_minority_with_every_store_answering_is_not_committed() -> None:
    replicas, stores = _replicas()
    payload, _ = _rec(1, GENESIS)
    stores["aws"].create(replicas.log_key(1), payload)  # a writer that died after one store
    assert replicas.read(full=True).records == []
    view = replicas.read(full=True)
    rec, _ = replicas.append(view, fence=2, type="lease", at="t", by="other", data={})
    assert rec.seq == 1 and [r.sha256 for r in replicas.read(full=True).records] == [rec.sha256]
    report = {r.name: r for r in replicas.read(full=True).reports(replicas.wheres())}
    assert report["aws"].differing == [1]
    replicas.repair(replicas.read(full=True))
    assert all(r.in_sync for r in replicas.read(full=True).reports(replicas.wheres()))


def test_two_candidates_the_next_record_decides() -> None:
    replicas, stores = _replicas()
    p_loser, _loser = _rec(1, GENESIS, fence=9)
    p_winner, winner = _rec(1, GENESIS, fence=1)
    p_next, _ = _rec(2, winner.sha256, fence=1)
    stores["aws"].create(replicas.log_key(1), p_winner)
    stores["gcp"].create(replicas.log_key(1), p_winner)
    stores["azure"].create(replicas.log_key(1), p_loser)
    for name in ("aws", "gcp"):
        stores[name].create(replicas.log_key(2), p_next)
    stores["aws"].down = True  # gcp and azure tie on record 1; record 2 names the winner
    assert [r.sha256 for r in replicas.read(full=True).records][:1] == [winner.sha256]


def test_no_majority_answering_refuses_the_write_naming_the_stores() -> None:
    from orchestrator.errors import StateUnavailable

    replicas, stores = _replicas()
    stores["gcp"].down = stores["azure"].down = True
    view = replicas.read()
    assert view.possibly_stale and sorted(view.unreachable) == ["azure", "gcp"]
    with pytest.raises(StateUnavailable) as err:
        replicas.append(view, fence=1, type="lease", at="t", by="me", data={})
    assert err.value.unreachable == ["azure", "gcp"]
    assert stores["aws"].objects == {}  # the lone copy was taken back


def test_state_config_is_checked_at_load() -> None:
    with pytest.raises(ConfigError, match=r"state.stores names 'oracle'"):
        parse_config({"clouds": {"aws": {"provider": "aws", "storage": {"bucket": "b"}}},
                      "state": {"backend": "objectstore", "stores": ["aws", "oracle"]}})
    with pytest.raises(ConfigError, match="listed twice"):
        parse_config({"clouds": {"aws": {"provider": "aws", "storage": {"bucket": "b"}}},
                      "state": {"stores": ["aws", "aws"]}})
    with pytest.raises(ConfigError, match="cannot hold the release state"):
        parse_config({"clouds": {"disk": {"provider": "local", "storage": {"bucket": "/tmp/x"}}},
                      "state": {"backend": "objectstore", "stores": ["disk"]}})
    cfg = parse_config({"clouds": {"aws": {"provider": "aws", "storage": {"bucket": "b"}},
                                   "disk": {"provider": "local", "storage": {"bucket": "/tmp/x"}}},
                        "state": {"backend": "objectstore"}})
    assert cfg.state_stores() == ["aws"] and cfg.state.lease_ttl_s == 60
    assert parse_config({}).state.backend == "sqlite"
