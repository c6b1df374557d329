"""``mco config``: bring infrastructure made elsewhere into mco.yaml.

``mco config import-pulumi --stack aws`` reads the outputs of a stack of the Pulumi
project in ``infra/`` (``pulumi stack output --json``) and merges them into mco.yaml.
Every stack exports ``clouds``: exactly the ``clouds:`` mapping of mco.yaml for what it
provisioned (storage, registry, cluster), so the import is a validated merge, not a
translation. Cluster kubeconfigs (a secret output) are written to files only the user
can read, and never printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from orchestrator.cli._common import OutputFormat, OutputOpt, console, emit
from orchestrator.errors import ConfigError

__all__ = ["app", "import_pulumi_outputs", "read_stack_outputs"]

app = typer.Typer(no_args_is_help=True)

# Sections a stack may export for a cloud (reported as what the import changed).
_STACK_SECTIONS = ("provider", "storage", "registry", "cluster", "pricing_key")
_SECRET_PLACEHOLDER = "[secret]"


def _default_project_dir() -> Path:
    for candidate in (Path("infra"), Path(".")):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return Path("infra")


def read_stack_outputs(stack: str, project_dir: Path, *, pulumi_bin: str | None = None) -> dict[str, Any]:
    """``pulumi stack output --json --show-secrets --stack STACK`` in ``project_dir``."""
    exe = pulumi_bin or shutil.which("pulumi")
    if exe is None:
        raise ConfigError(
            "the pulumi CLI is not installed (not on PATH)",
            hint="install it (see README, 'Pulumi'), or where it is installed run "
                 f"`pulumi stack output --json --show-secrets --stack {stack} > {stack}.json` "
                 f"and pass --from-json {stack}.json",
        )
    if not (project_dir / "Pulumi.yaml").is_file():
        raise ConfigError(f"{project_dir} is not a Pulumi project (no Pulumi.yaml)",
                          hint="pass --cwd with the directory of mco's Pulumi project (infra/)")
    # --show-secrets: the kubeconfig output is a secret; it goes to a 0600 file, never to output.
    cmd = [exe, "stack", "output", "--json", "--show-secrets", "--stack", stack, "--non-interactive"]
    try:
        proc = subprocess.run(cmd, cwd=project_dir, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"`pulumi stack output --stack {stack}` did not answer within 120 s",
                          hint="check `pulumi whoami` and the backend you are logged in to") from None
    except OSError as exc:
        raise ConfigError(f"cannot run {exe}: {exc.strerror}", hint="check the pulumi installation") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ConfigError(f"`pulumi stack output --stack {stack}` failed: {last}",
                          hint="check the stack name (`pulumi stack ls`) and that `pulumi up` finished")
    return _parse_json(proc.stdout, f"pulumi stack output --stack {stack}")


def _parse_json(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.msg} at line {exc.lineno})",
                          hint="pass the output of `pulumi stack output --json`") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object of stack outputs, got {type(data).__name__}",
                          hint="pass the output of `pulumi stack output --json`")
    return data


def _validated_clouds(outputs: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """The ``clouds`` output, each entry checked against mco.yaml's CloudConfig."""
    from pydantic import ValidationError

    from orchestrator.config import CloudConfig

    clouds = outputs.get("clouds")
    if not isinstance(clouds, dict) or not clouds:
        raise ConfigError(
            f"{where}: no 'clouds' output (outputs present: {', '.join(sorted(outputs)) or 'none'})",
            hint="import a stack of mco's Pulumi project (infra/), after `pulumi up` has finished")
    out: dict[str, dict[str, Any]] = {}
    for name, section in clouds.items():
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: clouds.{name} is not a mapping")
        section = {k: v for k, v in section.items() if v is not None}
        try:
            CloudConfig.model_validate(section)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{where}: clouds.{name}.{loc}: {err['msg']}",
                              hint="the stack's outputs do not fit mco.yaml; update infra/ and this mco together") from None
        out[str(name)] = section
    return out


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def import_pulumi_outputs(outputs: dict[str, Any], config_path: Path, *, label: str, write: bool = True,
                          kube_dir: Path | None = None) -> dict[str, Any]:
    """Merge a stack's outputs into the mco config at ``config_path``; returns a summary.

    ``label`` names the stack (used in messages and kubeconfig file names). The merged
    config is validated as a whole before anything is written.
    """
    from orchestrator.config import parse_config

    where = f"stack '{label}'"
    clouds = _validated_clouds(outputs, where)

    data: dict[str, Any] = {}
    if config_path.is_file():
        try:
            data = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path} is not valid YAML: {exc}", hint="fix it before importing into it") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{config_path}: the top level must be a mapping")

    notes: list[str] = []
    kubeconfig_files: dict[str, str] = {}
    kubeconfigs = outputs.get("kubeconfigs")
    if kubeconfigs == _SECRET_PLACEHOLDER:
        kubeconfigs = None
        notes.append("kubeconfigs were hidden as [secret]: export them with "
                     "`pulumi stack output --json --show-secrets` to import cluster credentials")
    state_dir = Path((data.get("project") or {}).get("state_dir", ".mco"))
    if not state_dir.is_absolute():
        state_dir = config_path.resolve().parent / state_dir
    kube_dir = kube_dir or state_dir / "kube"

    merged_clouds: dict[str, Any] = dict(data.get("clouds") or {})
    changed: dict[str, list[str]] = {}
    for name, section in clouds.items():
        # Sections the stack exported replace the old ones; a section it did not make (a
        # cluster configured by hand, say) and keys such as priority are kept.
        entry = {**(merged_clouds.get(name) or {}), **section}
        text = (kubeconfigs or {}).get(name) if isinstance(kubeconfigs, dict) else None
        if isinstance(text, str) and text and text != _SECRET_PLACEHOLDER and "cluster" in entry:
            file = kube_dir / f"{_safe(label)}-{_safe(name)}.kubeconfig"
            if write:
                _write_private(file, text)
            entry["cluster"] = {**entry["cluster"], "kubeconfig": str(file)}
            kubeconfig_files[name] = str(file)
        elif text == _SECRET_PLACEHOLDER:
            notes.append(f"clouds.{name}: kubeconfig is [secret]; rerun with --show-secrets output to import it")
        merged_clouds[name] = entry
        changed[name] = sorted(k for k in section if k in _STACK_SECTIONS)
    merged = {**data, "clouds": merged_clouds}
    parse_config(merged, source=config_path)  # the whole file must still be a valid mco.yaml

    if write:
        header = f"# clouds {', '.join(clouds)}: imported from Pulumi {where} by `mco config import-pulumi`.\n"
        body = yaml.safe_dump(merged, sort_keys=False)
        _write_atomic(config_path, header + body)
    return {
        "stack": label,
        "config": str(config_path),
        "written": write,
        "clouds": {name: merged_clouds[name] for name in clouds},
        "sections": changed,
        "kubeconfigs": kubeconfig_files,
        "notes": notes,
    }


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


@app.command("import-pulumi")
def import_pulumi(
    stack: Annotated[str | None, typer.Option("--stack", "-s", help="stack of infra/ to read (runs `pulumi stack output`)")] = None,
    from_json: Annotated[Path | None, typer.Option("--from-json", help="a saved `pulumi stack output --json` ('-' for stdin) instead of running pulumi")] = None,
    cwd: Annotated[Path | None, typer.Option("--cwd", help="the Pulumi project directory (default: ./infra)")] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="the mco config to merge into (created if missing)")] = Path("mco.yaml"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the merged sections; write nothing")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Turn a Pulumi stack's outputs into the matching clouds section of mco.yaml."""
    if stack is None and from_json is None:
        raise ConfigError("give exactly one of --stack NAME or --from-json FILE",
                          hint="e.g. `mco config import-pulumi --stack aws` (with --from-json, --stack only names it)")
    if from_json is not None:
        if str(from_json) == "-":
            import sys

            outputs = _parse_json(sys.stdin.read(), "stdin")
        else:
            try:
                text = from_json.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read {from_json}: {exc.strerror}",
                                  hint="pass the file `pulumi stack output --json > FILE` wrote") from None
            outputs = _parse_json(text, str(from_json))
        label = stack or from_json.stem
    else:
        assert stack is not None
        outputs = read_stack_outputs(stack, cwd or _default_project_dir())
        label = stack
    result = import_pulumi_outputs(outputs, config, label=label, write=not dry_run)

    def show(r: dict[str, Any]) -> None:
        verb = "would merge" if dry_run else "merged"
        for name, sections in r["sections"].items():
            console.print(f"[green]{verb}[/] clouds.{name} ({', '.join(sections)}) into {r['config']}", highlight=False)
        for name, file in r["kubeconfigs"].items():
            console.print(f"  kubeconfig for {name}: {file} (mode 0600)", highlight=False)
        for note in r["notes"]:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        if dry_run:
            console.print(yaml.safe_dump({"clouds": r["clouds"]}, sort_keys=False), highlight=False)

    emit(result, output, show)
