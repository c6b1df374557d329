"""Each provider's conditional writes, against its real emulator: the service enforces them."""

from __future__ import annotations

import uuid

import pytest

from orchestrator.errors import PreconditionFailed
from orchestrator.providers.loader import get_provider
from tests.integration.state.conftest import STORES
from tests.integration.storage.conftest import Emulators


@pytest.mark.parametrize("cloud", STORES)
def test_create_replace_delete_are_conditional(all_up: Emulators, cloud: str) -> None:
    cfg = all_up.config()
    store = get_provider(cloud, cfg.cloud(cloud)).conditional_store()
    key = f"mco/test/{uuid.uuid4().hex}/obj.json"
    try:
        assert store.read(key) is None
        v1 = store.create(key, b"one")
        with pytest.raises(PreconditionFailed):
            store.create(key, b"two")
        got = store.read(key)
        assert got is not None and got.data == b"one" and got.version == v1
        v2 = store.replace(key, b"two", version=v1)
        assert v2 != v1
        with pytest.raises(PreconditionFailed):
            store.replace(key, b"three", version=v1)  # stale version: refused
        with pytest.raises(PreconditionFailed):
            store.delete_if(key, version=v1)
        assert store.versions(key.rsplit("/", 1)[0] + "/") == {key: v2}
        store.delete_if(key, version=v2)
        assert store.read(key) is None
        store.delete_if(key, version=v2)  # already gone: no error
    finally:
        store.close()


@pytest.mark.parametrize("cloud", STORES)
def test_a_stopped_store_is_unreachable_quickly(all_up: Emulators, cloud: str) -> None:
    import time

    from orchestrator.errors import Unreachable

    store = get_provider(cloud, all_up.config().cloud(cloud)).conditional_store()
    all_up.kill(cloud)
    started = time.monotonic()
    with pytest.raises(Unreachable):
        store.versions("mco/")
    assert time.monotonic() - started < 8
    store.close()
