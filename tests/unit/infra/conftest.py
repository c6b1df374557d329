"""Run mco's Pulumi program under Pulumi's own unit-test mocks (no engine, no cloud).

``pulumi.runtime.set_mocks`` is called before the program (infra/__main__.py) is
executed; the mocks record every resource the program registers, with the exact inputs
the engine would receive, and answer with plausible cloud outputs.
"""

from __future__ import annotations

import base64
import json
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

INFRA = Path(__file__).resolve().parents[3] / "infra"
PROJECT = "mco-infra"
# The program imports its components as `components.*`, as it does when Pulumi runs it from infra/.
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))


@dataclass
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]
    provider: str | None
    custom: bool


def _fake_outputs(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    """What a cloud would add to a resource's state: names, ARNs, URLs."""
    i = args.inputs
    t = args.typ
    if t == "aws:s3/bucket:Bucket":
        return {"bucket": f"{i.get('bucketPrefix', '')}0123abcd", "arn": f"arn:aws:s3:::{i.get('bucketPrefix', '')}0123abcd"}
    if t == "aws:ecr/repository:Repository":
        return {"repositoryUrl": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{i['name']}",
                "arn": f"arn:aws:ecr:us-east-1:123456789012:repository/{i['name']}"}
    if t == "aws:iam/role:Role":
        return {"arn": f"arn:aws:iam::123456789012:role/{args.name}", "name": args.name}
    if t == "aws:eks/cluster:Cluster":
        return {"name": args.name, "endpoint": "https://ABC.gr7.us-east-1.eks.amazonaws.com",
                "certificateAuthority": {"data": "Q0EK"}, "arn": "arn:aws:eks:us-east-1:123456789012:cluster/x"}
    if t == "gcp:storage/bucket:Bucket":
        name = i.get("name") or f"{args.name}-5f3a"
        return {"name": name, "url": f"gs://{name}"}
    if t == "gcp:serviceaccount/account:Account":
        return {"email": f"{i['accountId']}@proj.iam.gserviceaccount.com"}
    if t == "gcp:container/cluster:Cluster":
        return {"name": args.name, "endpoint": "34.1.2.3", "masterAuth": {"clusterCaCertificate": "Q0EK"}}
    if t == "azure-native:resources:ResourceGroup":
        return {"name": f"{args.name}1a2b"}
    if t == "azure-native:storage:StorageAccount":
        name = "artifactsaccount1a2b"
        return {"name": name, "primaryEndpoints": {"blob": f"https://{name}.blob.core.windows.net/"}}
    if t == "azure-native:storage:BlobContainer":
        return {"name": i.get("containerName", args.name)}
    if t == "azure-native:containerregistry:Registry":
        return {"name": i["registryName"], "loginServer": f"{i['registryName']}.azurecr.io",
                "id": f"/subscriptions/0000-sub/resourceGroups/mco/providers/Microsoft.ContainerRegistry/registries/{i['registryName']}"}
    if t == "azure-native:containerservice:ManagedCluster":
        return {"name": args.name, "identityProfile": {"kubeletidentity": {"objectId": "0bj-1d"}}}
    if t == "pulumi-python:dynamic/mco:Release":
        return {"number": i.get("planned_number")}
    return {}


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Registered] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), args.provider, bool(args.custom)))
        outputs = _fake_outputs(args)
        # Azure resources are named by their ARM id, and programs use it (role scopes).
        return str(outputs.get("id", f"{args.name}-id")), {**args.inputs, **outputs}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.calls.append((args.token, dict(args.args)))
        if args.token == "azure-native:containerservice:listManagedClusterUserCredentials":
            kubeconfig = "apiVersion: v1\nkind: Config\ncurrent-context: cluster-aks\n"
            return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(kubeconfig.encode()).decode()}]}
        return {}


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """Also keeps what each component registered with ``register_outputs``."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered_outputs: dict[str, dict[str, Any]] = {}

    def RegisterResourceOutputs(self, request: Any) -> Any:
        from pulumi.runtime import rpc

        self.registered_outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)


@dataclass
class StackRun:
    stack: str
    resources: list[Registered]
    outputs: dict[str, Any] = field(default_factory=dict)
    monitor: RecordingMonitor | None = None

    @property
    def urns(self) -> list[str]:
        return list(self.monitor.resources) if self.monitor else []

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> Registered:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
        return found[0]

    def components(self) -> list[Registered]:
        return [r for r in self.resources if not r.custom and r.typ.startswith("mco:")]


def stack_config(stack: str) -> dict[str, Any]:
    """The config of ``infra/Pulumi.<stack>.yaml``, as Pulumi gives it to a program."""
    data = yaml.safe_load((INFRA / f"Pulumi.{stack}.yaml").read_text()) or {}
    return dict(data.get("config") or {})


def _as_config_strings(config: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in config.items():
        if isinstance(value, (dict, list)):
            out[key] = json.dumps(value)
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def _resolve(value: Any) -> Any:
    """Await every Output inside ``value`` (exports are nested dicts of Outputs)."""

    async def go(v: Any) -> Any:
        if isinstance(v, pulumi.Output):
            return await go(await v.future())
        if isinstance(v, dict):
            return {k: await go(x) for k, x in v.items()}
        if isinstance(v, list):
            return [await go(x) for x in v]
        return v

    return go(value)


def run_stack(stack: str, overrides: dict[str, Any] | None = None, *, preview: bool = False) -> StackRun:
    """Run infra/__main__.py for ``stack`` under mocks; ``overrides`` replace config keys."""
    from pulumi.runtime import settings

    config = {k: v for k, v in {**stack_config(stack), **(overrides or {})}.items() if v is not None}
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    settings.ROOT.set(None)  # a fresh Stack per run, so exports do not leak between stacks
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(_as_config_strings(config))
    run = StackRun(stack, mocks.resources, monitor=monitor)

    @pulumi.runtime.test
    def program() -> Any:
        runpy.run_path(str(INFRA / "__main__.py"), run_name="__main__")
        root = settings.get_root_resource()
        return pulumi.Output.from_input(_resolve(dict(root.outputs))).apply(run.outputs.update)

    program()
    return run


@pytest.fixture
def kubeconfig_with_kind(tmp_path: Path) -> Path:
    """A kubeconfig naming the three kind contexts `mco local up clusters` creates."""
    names = ["mco-aws", "mco-gcp", "mco-azure"]
    data = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": f"kind-{n}", "cluster": {"server": f"https://127.0.0.1:{6443 + i}"}}
                     for i, n in enumerate(names)],
        "users": [{"name": f"kind-{n}", "user": {}} for n in names],
        "contexts": [{"name": f"kind-{n}", "context": {"cluster": f"kind-{n}", "user": f"kind-{n}"}} for n in names],
        "current-context": "kind-mco-aws",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(autouse=True)
def _event_loop_for_pulumi() -> Any:
    """Pulumi's mocks call ``asyncio.get_event_loop()``. An earlier test's ``asyncio.run``
    leaves the main thread with no loop set, so give each test a fresh one."""
    import asyncio

    # Left set afterwards, as Pulumi's own runs leave theirs: later tests may ask for it.
    asyncio.set_event_loop(asyncio.new_event_loop())
    yield
