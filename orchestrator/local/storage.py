"""``mco local up storage``: three real object-store emulators on loopback, one per cloud.

    aws    moto's server mode (S3 API, in memory)          .venv/bin/moto_server
    gcp    fake-gcs-server (GCS JSON API, on disk)          $MCO_CACHE/fake-gcs-server-<ver>/
           or gcp-storage-emulator when Go could not build it
    azure  Azurite's blob service (on disk)                 $MCO_CACHE/azurite-<ver>/

``make setup`` installs them (scripts/setup/20-storage-emulators.sh, which reads the
versions below). Each server gets a free loopback port, remembered in
``.mco/local/storage/ports.json`` so restarts keep mco.local.yaml valid, and the bucket
(container) ``mco-models`` is created.

Credentials: mco.local.yaml says ``credentials: emulator`` and holds no secret. The
providers then use each emulator's public development credentials (moto accepts any
key, the GCS emulators are anonymous, Azurite has its documented devstoreaccount1), and
the config validator refuses that mode for any non-loopback endpoint. Other programs
can reach Azurite with the standard ``UseDevelopmentStorage=true``-style connection
string documented by Azurite; mco never prints the key.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, MCOError, Unreachable
from orchestrator.local.base import CLOUDS, LocalContext
from orchestrator.local.processes import ManagedProcess
from orchestrator.net import free_port, port_open
from orchestrator.providers.loader import provider_class

__all__ = ["AZURITE_VERSION", "BUCKET", "FAKE_GCS_VERSION", "StorageStandIn"]

HOST = "127.0.0.1"
BUCKET = "mco-models"
PREFIX = "mco"
# Pinned, and read by scripts/setup/20-storage-emulators.sh: one place for the versions.
FAKE_GCS_VERSION = "v1.56.1"
AZURITE_VERSION = "3.35.0"   # the last release whose engines field accepts Node 20 (Debian/this image)
INSTALL_HINT = "run `make setup` (scripts/setup/20-storage-emulators.sh installs the storage emulators)"


def fake_gcs_binary(cache_dir: Path) -> Path:
    return cache_dir / f"fake-gcs-server-{FAKE_GCS_VERSION}" / "fake-gcs-server"


def azurite_binary(cache_dir: Path) -> Path:
    return cache_dir / f"azurite-{AZURITE_VERSION}" / "node_modules" / ".bin" / "azurite-blob"


def _venv_script(name: str) -> Path:
    return Path(sys.executable).parent / name


@dataclass(frozen=True)
class Emulator:
    cloud: str
    name: str
    process: ManagedProcess
    port: int

    @property
    def endpoint(self) -> str:
        base = f"http://{HOST}:{self.port}"
        return f"{base}/devstoreaccount1" if self.cloud == "azure" else base


class StorageStandIn:
    name = "storage"

    # ---- layout of state --------------------------------------------------------------------

    def _ports(self, ctx: LocalContext) -> dict[str, int]:
        path = ctx.dir_for(self.name) / "ports.json"
        try:
            ports = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            ports = {}
        changed = False
        for cloud in CLOUDS:
            if cloud not in ports:
                ports[cloud] = free_port(HOST)
                changed = True
        if changed:
            path.write_text(json.dumps(ports))
        return ports

    def emulator(self, ctx: LocalContext, cloud: str) -> Emulator:
        port = self._ports(ctx)[cloud]
        state = ctx.dir_for(self.name) / cloud
        state.mkdir(parents=True, exist_ok=True)
        data = (state / "data").resolve()
        if cloud == "aws":
            argv = [str(_venv_script("moto_server")), "-H", HOST, "-p", str(port)]
            name = "moto"
        elif cloud == "gcp":
            fake = fake_gcs_binary(ctx.cache_dir)
            if fake.is_file():
                argv = [str(fake), "-host", HOST, "-port", str(port), "-scheme", "http", "-backend", "filesystem",
                        "-filesystem-root", str(data), "-public-host", f"{HOST}:{port}", "-log-level", "warn"]
                name = "fake-gcs-server"
            else:  # Go was not available to build fake-gcs-server: the pip-installed emulator
                argv = [str(_venv_script("gcp-storage-emulator")), "start", "--host", HOST, "--port", str(port),
                        "--in-memory"]
                name = "gcp-storage-emulator"
        elif cloud == "azure":
            argv = [str(azurite_binary(ctx.cache_dir)), "--blobHost", HOST, "--blobPort", str(port),
                    "--location", str(data), "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"]
            name = "azurite"
        else:
            raise ConfigError(f"no storage emulator for cloud '{cloud}'", hint=f"clouds are {', '.join(CLOUDS)}")
        return Emulator(cloud, name, ManagedProcess(name=name, state_dir=state, argv=argv), port)

    def _check_installed(self, emu: Emulator) -> None:
        exe = Path(emu.process.argv[0])
        if not exe.is_file():
            raise ConfigError(f"the {emu.cloud} storage emulator ({emu.name}) is not installed: {exe} is missing",
                              hint=INSTALL_HINT)
        if emu.name == "azurite" and shutil.which("node") is None:
            raise ConfigError("Azurite needs Node.js, which is not installed", hint=INSTALL_HINT)

    # ---- StandIn -------------------------------------------------------------------------

    def sections(self, ctx: LocalContext) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for cloud in CLOUDS:
            emu = self.emulator(ctx, cloud)
            storage: dict[str, Any] = {"bucket": BUCKET, "endpoint": emu.endpoint, "prefix": PREFIX,
                                       "credentials": "emulator"}
            if cloud == "aws":  # S3's SDK wants a region even for an emulator
                storage["region"] = provider_class(cloud).default_region
            out[cloud] = {"provider": cloud, "storage": storage}
        return out

    def start(self, ctx: LocalContext, cloud: str, *, timeout: float = 60.0) -> Emulator:
        """Start one emulator (no-op if running) and make sure its bucket exists."""
        emu = self.emulator(ctx, cloud)
        self._check_installed(emu)
        if emu.process.running() and not port_open(HOST, emu.port):
            emu.process.stop()  # a hung server: replace it
        if not emu.process.running() and port_open(HOST, emu.port):
            raise Unreachable(f"port {emu.port} for the {cloud} storage emulator is taken by another program",
                              hint=f"stop that program, or delete {ctx.dir_for(self.name) / 'ports.json'} "
                                   "to pick new ports")
        emu.process.start(host=HOST, port=emu.port, timeout=timeout)
        self._ensure_bucket(ctx, cloud, deadline=time.monotonic() + timeout)
        return emu

    def _ensure_bucket(self, ctx: LocalContext, cloud: str, *, deadline: float) -> None:
        from orchestrator.config import CloudConfig
        from orchestrator.providers.loader import get_provider  # the same interface the clouds use

        section = self.sections(ctx)[cloud]
        provider = get_provider(cloud, CloudConfig.model_validate(section))
        while True:
            try:
                with provider.artifact_store() as store:
                    store.ensure_bucket()
                return
            except MCOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # listening is not always serving yet

    def up(self, ctx: LocalContext) -> dict[str, dict[str, Any]]:
        for cloud in CLOUDS:
            self.start(ctx, cloud)
        return self.sections(ctx)

    def stop(self, ctx: LocalContext, cloud: str, *, kill: bool = False) -> None:
        import signal

        self.emulator(ctx, cloud).process.stop(sig=signal.SIGKILL if kill else signal.SIGTERM)

    def down(self, ctx: LocalContext) -> None:
        for cloud in CLOUDS:
            self.stop(ctx, cloud)

    def router_defaults(self, sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {}

    def status(self, ctx: LocalContext) -> list[dict[str, Any]]:
        rows = []
        for cloud in CLOUDS:
            emu = self.emulator(ctx, cloud)
            pid = emu.process.pid()
            up = pid is not None and port_open(HOST, emu.port)
            rows.append({"name": emu.name, "cloud": cloud, "state": "running" if up else "stopped",
                         "endpoint": emu.endpoint, "bucket": BUCKET, "pid": pid or ""})
        return rows


def main() -> None:  # `python -m orchestrator.local.storage versions` for the setup script
    if sys.argv[1:] == ["versions"]:
        print(f"FAKE_GCS_VERSION={FAKE_GCS_VERSION}")
        print(f"AZURITE_VERSION={AZURITE_VERSION}")
    else:
        print("usage: python -m orchestrator.local.storage versions", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
