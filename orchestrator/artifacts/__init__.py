"""Model bundles in object stores: content-addressed layout, verified push and pull.

    layout.py    key names (``<prefix>/models/<name>/<digest>/...``) and the checks that keep
                 every name inside its prefix
    digests.py   one read per file for sha256 + md5s, shared by every cloud in a push
    push.py      ``push_bundle(config, bundle, clouds, progress=...) -> {cloud: CloudPush}``
    pull.py      ``pull_bundle(store, layout, name, digest, out)``; ``pull_from_storage`` for
                 code holding only a storage section

Stores come from ``orchestrator.providers`` (one ``ArtifactStore`` per cloud).
"""

from orchestrator.artifacts.pull import pull_bundle, pull_from_provider, pull_from_storage
from orchestrator.artifacts.push import CloudPush, PushProgress, push_bundle, storage_providers

__all__ = [
    "CloudPush",
    "PushProgress",
    "pull_bundle",
    "pull_from_provider",
    "pull_from_storage",
    "push_bundle",
    "storage_providers",
]
