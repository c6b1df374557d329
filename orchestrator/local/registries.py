"""``mco local up registries``: three real OCI registries on loopback, one per cloud.

Each is Debian's ``docker-registry`` (the CNCF distribution registry) with its own data
directory under ``.mco/local/registries/<cloud>/``. The azure one requires htpasswd
(bcrypt) basic auth, as ACR's admin user does, so the login path is exercised.

Secrets never go into mco.local.yaml. The generated password is written to
``.mco/local/registries/azure/password`` (mode 0600) and the config names that file
(``password_file``) and an environment variable (``password_env``,
``MCO_REGISTRY_AZURE_PASSWORD``) that wins when it is set. ``mco push`` reads one of them.

The Docker engine pushes to ``127.0.0.1:PORT`` over plain HTTP without extra setup,
because 127.0.0.0/8 is an insecure registry by default.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ConfigError
from orchestrator.local.base import CLOUDS, LocalContext
from orchestrator.local.processes import ManagedProcess
from orchestrator.net import free_port, port_open

__all__ = ["AUTH_CLOUD", "RegistryStandIn"]

HOST = "127.0.0.1"
AUTH_CLOUD = "azure"  # the registry with htpasswd auth
USERNAME = "mco"
REPOSITORY = "mco"
INSTALL_HINT = "run `sudo bash scripts/setup/30-registries.sh` (installs docker-registry and apache2-utils)"


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigError(f"`{name}` is not installed (Debian package {package})", hint=INSTALL_HINT)
    return path


class RegistryStandIn:
    name = "registries"

    def _dir(self, ctx: LocalContext, cloud: str) -> Path:
        path = ctx.dir_for(self.name) / cloud
        path.mkdir(parents=True, exist_ok=True)
        return path

    def process(self, ctx: LocalContext, cloud: str) -> ManagedProcess:
        state = self._dir(ctx, cloud)
        return ManagedProcess(name="registry", state_dir=state,
                              argv=[shutil.which("docker-registry") or "docker-registry", "serve",
                                    str((state / "config.yml").resolve())])

    def _state(self, ctx: LocalContext, cloud: str) -> dict[str, Any]:
        path = self._dir(ctx, cloud) / "state.json"
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}

    def _write_password(self, state: Path) -> Path:
        """Make (once) the password file and the htpasswd file; return the password file."""
        password_file = state / "password"
        htpasswd_file = state / "htpasswd"
        if password_file.is_file() and htpasswd_file.is_file():
            return password_file
        password = secrets.token_urlsafe(24)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        # -i reads the password from stdin, so it never shows in a process list.
        proc = subprocess.run([_binary("htpasswd", "apache2-utils"), "-niB", USERNAME],
                              input=password, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConfigError(f"htpasswd failed: {proc.stderr.strip()}", hint=INSTALL_HINT)
        fd = os.open(htpasswd_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(proc.stdout)
        return password_file

    def _config(self, state: Path, cloud: str, port: int) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}, "fields": {"service": f"registry-{cloud}"}},
            "storage": {"filesystem": {"rootdirectory": str((state / "data").resolve())},
                        "delete": {"enabled": True}, "cache": {"blobdescriptor": "inmemory"}},
            "http": {"addr": f"{HOST}:{port}", "secret": secrets.token_hex(16),
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if cloud == AUTH_CLOUD:
            config["auth"] = {"htpasswd": {"realm": f"mco-local-{cloud}",
                                           "path": str((state / "htpasswd").resolve())}}
        return config

    def _section(self, cloud: str, port: int, state: Path) -> dict[str, Any]:
        section: dict[str, Any] = {"url": f"{HOST}:{port}", "repository": REPOSITORY, "auth": "none",
                                   "insecure_http": True}
        if cloud == AUTH_CLOUD:
            section.update(auth="basic", username=USERNAME, password_env=f"MCO_REGISTRY_{cloud.upper()}_PASSWORD",
                           password_file=str((state / "password").resolve()))
        return section

    def up(self, ctx: LocalContext) -> dict[str, dict[str, Any]]:
        _binary("docker-registry", "docker-registry")
        sections: dict[str, dict[str, Any]] = {}
        for cloud in CLOUDS:
            state_dir = self._dir(ctx, cloud)
            proc = self.process(ctx, cloud)
            state = self._state(ctx, cloud)
            port = int(state.get("port", 0))
            if not (proc.running() and port and port_open(HOST, port)):
                proc.stop()
                if not port or port_open(HOST, port):  # first start, or the old port was taken
                    port = free_port(HOST)
                if cloud == AUTH_CLOUD:
                    self._write_password(state_dir)
                (state_dir / "data").mkdir(exist_ok=True)
                (state_dir / "config.yml").write_text(yaml.safe_dump(self._config(state_dir, cloud, port)))
                (state_dir / "config.yml").chmod(0o600)  # holds the http secret
                proc.start(host=HOST, port=port, timeout=20)
                (state_dir / "state.json").write_text(json.dumps({"port": port}))
            sections[cloud] = {"registry": self._section(cloud, port, state_dir)}
        return sections

    def down(self, ctx: LocalContext) -> None:
        for cloud in CLOUDS:
            self.process(ctx, cloud).stop()

    def router_defaults(self, sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {}

    def status(self, ctx: LocalContext) -> list[dict[str, Any]]:
        rows = []
        for cloud in CLOUDS:
            port = self._state(ctx, cloud).get("port")
            proc = self.process(ctx, cloud)
            pid = proc.pid()
            up = pid is not None and bool(port and port_open(HOST, int(port)))
            rows.append({"name": f"registry-{cloud}", "cloud": cloud, "state": "running" if up else "stopped",
                         "url": f"{HOST}:{port}" if port else "", "auth": "basic" if cloud == AUTH_CLOUD else "none",
                         "pid": pid or ""})
        return rows
