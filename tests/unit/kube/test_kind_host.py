"""Host workarounds for kind: the docker wrapper, the kind config per node image, the sysctl guard."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from orchestrator.kube.kind_host import (
    KUBELET_SYSCTLS,
    PRIVILEGED_SUBSTITUTE,
    HostProfile,
    SysctlGuard,
    docker_wrapper_dir,
)
from orchestrator.local.clusters import NODE_PORT, ClusterSpec

REPO = Path(__file__).resolve().parents[3]


def _fake_docker(tmp_path: Path) -> str:
    """A stand-in for the docker CLI that prints the arguments it got, one per line."""
    script = tmp_path / "real-docker"
    script.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    script.chmod(0o755)
    return str(script)


def _through_wrapper(tmp_path: Path, *args: str) -> list[str]:
    bin_dir = docker_wrapper_dir(tmp_path / "state", real_docker=_fake_docker(tmp_path))
    out = subprocess.run([str(bin_dir / "docker"), *args], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_wrapper_swaps_privileged_for_what_the_host_can_grant(tmp_path: Path) -> None:
    argv = _through_wrapper(tmp_path, "run", "--name", "n1", "--privileged", "--volume", "/var", "img:1")
    assert "--privileged" not in argv
    assert argv[:3] == ["run", "--name", "n1"]
    assert argv[3:3 + len(PRIVILEGED_SUBSTITUTE)] == list(PRIVILEGED_SUBSTITUTE)
    assert "--device-cgroup-rule=a *:* rwm" in argv  # a value with spaces survives as one argument
    assert argv[-3:] == ["--volume", "/var", "img:1"]


def test_wrapper_drops_privileged_from_exec(tmp_path: Path) -> None:
    assert _through_wrapper(tmp_path, "exec", "--privileged", "-i", "node", "cat", "/kind/version") == [
        "exec", "-i", "node", "cat", "/kind/version"]


def test_wrapper_passes_other_commands_through(tmp_path: Path) -> None:
    assert _through_wrapper(tmp_path, "inspect", "--privileged", "x y") == ["inspect", "--privileged", "x y"]


def test_kind_config_for_our_node_image_uses_cgroupfs_and_the_static_cni() -> None:
    profile = HostProfile(privileged_works=False, privileged_error="caps", node_image="mco-kind/node:latest",
                          mco_node_image=True)
    config = ClusterSpec("gcp", 41234).kind_config(profile)
    assert config["name"] == "mco-gcp"
    (node,) = config["nodes"]
    assert node["image"] == "mco-kind/node:latest"
    assert node["extraPortMappings"] == [{"containerPort": NODE_PORT, "hostPort": 41234,
                                          "listenAddress": "127.0.0.1", "protocol": "TCP"}]
    assert config["networking"]["disableDefaultCNI"] is True
    patches = {doc["kind"]: doc for doc in map(yaml.safe_load, config["kubeadmConfigPatches"])}
    assert patches["KubeletConfiguration"]["cgroupDriver"] == "cgroupfs"
    assert patches["ClusterConfiguration"]["controllerManager"]["extraArgs"]["leader-elect"] == "false"


def test_kind_config_on_a_normal_host_is_stock_kind() -> None:
    profile = HostProfile(privileged_works=True, privileged_error="", node_image=None, mco_node_image=False)
    config = ClusterSpec("aws", 40000).kind_config(profile)
    assert "image" not in config["nodes"][0]
    # only the single-node control plane patch: no cgroupfs, kind's own CNI
    assert [yaml.safe_load(p)["kind"] for p in config["kubeadmConfigPatches"]] == ["ClusterConfiguration"]
    assert "disableDefaultCNI" not in config["networking"]


def test_cluster_section_matches_the_config_schema() -> None:
    from orchestrator.config import ClusterConfig

    section = ClusterSpec("azure", 40001).section()["cluster"]
    parsed = ClusterConfig(**section)
    assert parsed.context == "kind-mco-azure" and parsed.kind_cluster == "mco-azure"
    assert parsed.endpoint == "http://127.0.0.1:40001" and parsed.node_port == NODE_PORT


def test_a_cluster_publishes_its_routers_port_and_lists_them_for_the_global_entry() -> None:
    from orchestrator.config import CloudConfig
    from orchestrator.local.clusters import ROUTER_NODE_PORT

    profile = HostProfile(privileged_works=True, privileged_error="", node_image=None, mco_node_image=False)
    spec = ClusterSpec("aws", 40000, router_host_port=40010)
    mappings = spec.kind_config(profile)["nodes"][0]["extraPortMappings"]
    assert {(m["containerPort"], m["hostPort"], m["listenAddress"]) for m in mappings} == {
        (NODE_PORT, 40000, "127.0.0.1"), (ROUTER_NODE_PORT, 40010, "127.0.0.1")}
    section = spec.section()
    assert CloudConfig(provider="aws", **section).router_urls == ["http://127.0.0.1:40010"]
    assert "router_urls" not in ClusterSpec("aws", 40000).section()  # an older cluster: no router port


def test_sysctl_guard_records_once_and_reports_changes(tmp_path: Path) -> None:
    guard = SysctlGuard(tmp_path)
    guard.record()
    recorded = json.loads(guard.path.read_text())
    assert set(recorded) == set(KUBELET_SYSCTLS)
    assert guard.changed() == {}
    # pretend the host had another value before: the guard must notice the difference
    recorded["kernel.panic"] = str(int(recorded["kernel.panic"]) + 7)
    guard.path.write_text(json.dumps(recorded))
    guard.record()  # must not overwrite the first record
    assert list(guard.changed()) == ["kernel.panic"]


def test_sysctl_guard_restores_what_changed_and_forgets_the_record(tmp_path: Path) -> None:
    proc_sys = tmp_path / "proc-sys"  # a writable stand-in for /proc/sys
    for name, value in {"vm.overcommit_memory": "0", "kernel.panic": "0", "kernel.panic_on_oops": "0"}.items():
        path = proc_sys / name.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    guard = SysctlGuard(tmp_path / "state", proc_sys=proc_sys)
    guard.record()
    # what a kubelet with the host's /proc/sys would do
    (proc_sys / "vm/overcommit_memory").write_text("1\n")
    (proc_sys / "kernel/panic").write_text("10\n")
    assert guard.changed() == {"vm.overcommit_memory": ("0", "1"), "kernel.panic": ("0", "10")}
    assert guard.restore() == {"vm.overcommit_memory": "0", "kernel.panic": "0"}
    assert (proc_sys / "vm/overcommit_memory").read_text().strip() == "0"
    assert (proc_sys / "kernel/panic").read_text().strip() == "0"
    assert not guard.path.exists()
    assert guard.restore() == {}  # nothing recorded, nothing to do


def test_node_entrypoint_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(REPO / "scripts/kind/node/entrypoint")], check=True)
