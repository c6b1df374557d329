"""The components use only resources and arguments the Pulumi SDKs do not deprecate.

Every DeprecationWarning raised while a stack runs is an error here. Loading an SDK module
warns about the deprecated classes it defines (``BucketV2`` and its family) whether or not a
program uses them; the components load those modules quietly (``components._common.sdk_module``)
so that these warnings, and the infra tests' output, name only what mco itself uses."""

from __future__ import annotations

import warnings

import pytest

from tests.unit.infra.conftest import run_stack, stack_config


@pytest.mark.parametrize(("stack", "cluster"), [
    ("aws", False), ("gcp", False), ("azure", False), ("aws", True), ("gcp", True), ("azure", True),
])
def test_no_stack_uses_a_deprecated_resource_or_argument(stack, cluster):
    overrides = None
    if cluster:
        extra = {"subnetIds": ["subnet-a", "subnet-b"]} if stack == "aws" else {}
        overrides = {"mco-infra:cluster": {**stack_config(stack)["mco-infra:cluster"], "enabled": True, **extra}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        run_stack(stack, overrides)
    deprecated = sorted({str(w.message) for w in caught
                         if issubclass(w.category, DeprecationWarning) and "pulumi" in w.filename})
    assert deprecated == []
