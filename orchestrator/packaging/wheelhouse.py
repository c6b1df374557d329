"""Wheels for the image, built on the host so the image build needs no network.

Two cached directories under ``$MCO_CACHE``:

- ``wheelhouse-<hash>/``: every wheel the model server needs (mco's core dependencies plus
  the ``serve`` extra, and the storage SDKs when the model is fetched at startup), keyed by a
  hash of the pinned requirements and the host's Python and platform tags;
- ``mco-wheel-<hash>/``: mco itself, keyed by a hash of its source files.

Direct requirements are pinned to the versions installed on the host, so the image runs
what the host tested. The image must use the host's Python minor version (3.11 on bookworm).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError, MCOError

__all__ = ["ROUTER_IMAGE_EXCLUDES", "Wheels", "cache_root", "image_requirements", "prepare_router_wheels",
           "prepare_wheels", "python_tag"]

# The router extra's matplotlib draws `mco router report` on the operator's machine; the
# router in a cluster never draws, so its image leaves it (and its dependencies) out.
ROUTER_IMAGE_EXCLUDES = frozenset({"matplotlib"})

REQUIREMENTS_FILE = "requirements.txt"


@dataclass(frozen=True)
class Wheels:
    deps_dir: Path  # wheelhouse with requirements.txt
    mco_wheel: Path
    requirements: tuple[str, ...]
    deps_cached: bool
    mco_cached: bool


def cache_root() -> Path:
    return Path(os.environ.get("MCO_CACHE", Path.home() / ".cache" / "mco"))


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def _pin(requirement: str) -> str:
    """``name>=x`` -> ``name==<host version>`` when the host has a version that satisfies it."""
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    try:
        installed = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        return f"{req.name}{req.specifier}" if req.specifier else req.name
    if req.specifier and not req.specifier.contains(installed, prereleases=True):
        return f"{req.name}{req.specifier}"
    return f"{req.name}=={installed}"


def image_requirements(extras: Iterable[str] = ("serve",)) -> list[str]:
    """mco's core requirements plus those of ``extras``, pinned, sorted, for this platform."""
    from packaging.requirements import Requirement

    try:
        declared = importlib.metadata.requires("mco") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise MCOError("mco is not installed as a package, so its requirements are unknown",
                       hint="pip install -e '.[all]' in the source checkout") from exc
    wanted = set(extras)
    out: set[str] = set()
    for text in declared:
        req = Requirement(text)
        if req.name == "mco":
            continue
        # A core requirement matches extra "" (and its platform markers are the host's).
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*wanted, "")):
            out.add(_pin(text.split(";")[0]))
    return sorted(out, key=str.lower)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pip_wheel(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise MCOError(f"building wheels for {what} failed:\n{tail}",
                       hint="pip needs to reach PyPI the first time (later builds use the cache); "
                            "check the network or PIP_INDEX_URL")


def _deps_wheelhouse(requirements: list[str]) -> tuple[Path, bool]:
    recipe = "\n".join([python_tag(), sysconfig.get_platform(), *requirements])
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    final = cache_root() / f"wheelhouse-{key}"
    with _lock(cache_root() / f".wheelhouse-{key}.lock"):
        if (final / REQUIREMENTS_FILE).is_file():
            return final, True
        tmp = Path(tempfile.mkdtemp(prefix=f".wheelhouse-{key}.", dir=cache_root()))
        try:
            _pip_wheel(["--wheel-dir", str(tmp), *requirements], "the model server's dependencies")
            (tmp / REQUIREMENTS_FILE).write_text("\n".join(requirements) + "\n")
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final, False


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _source_root() -> Path:
    import orchestrator

    root = Path(orchestrator.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise ConfigError(f"mco is installed without its source tree ({root} has no pyproject.toml), "
                          "so it cannot be put into an image",
                          hint="install mco from a source checkout: pip install -e '.[all]'")
    return root


def _copy_source(root: Path, dest: Path) -> str:
    """Copy what a wheel needs into ``dest`` and return the hash of what was copied."""
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "README.md"):
        if (root / name).is_file():
            shutil.copy2(root / name, dest / name)
    for dirpath, dirnames, filenames in os.walk(root / "orchestrator"):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for fname in sorted(filenames):
            if fname.endswith((".pyc", ".pyo")) or fname.startswith("."):
                continue
            src = Path(dirpath) / fname
            rel = src.relative_to(root)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                data = src.read_bytes()
            except OSError:
                continue  # a file removed while we walked
            target.write_bytes(data)
            digest.update(rel.as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
    digest.update((dest / "pyproject.toml").read_bytes())
    return digest.hexdigest()[:16]


def _mco_wheel() -> tuple[Path, bool]:
    root = _source_root()
    with tempfile.TemporaryDirectory(prefix="mco-src-") as src_tmp:
        src = Path(src_tmp)
        key = _copy_source(root, src)
        final = cache_root() / f"mco-wheel-{key}"
        with _lock(cache_root() / f".mco-wheel-{key}.lock"):
            found = sorted(final.glob("mco-*.whl")) if final.is_dir() else []
            if found:
                return found[0], True
            tmp = Path(tempfile.mkdtemp(prefix=f".mco-wheel-{key}.", dir=cache_root()))
            try:
                # Without build isolation the venv's setuptools builds it offline in a second;
                # with it, pip fetches setuptools and wheel from PyPI first.
                isolation = [] if _has("wheel") and _has("setuptools") else ["--use-pep517"]
                flags = ["--no-build-isolation"] if not isolation else isolation
                _pip_wheel(["--no-deps", *flags, "--wheel-dir", str(tmp), str(src)], "mco")
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        _prune_old_wheels(keep=final)
        return sorted(final.glob("mco-*.whl"))[0], False


def _prune_old_wheels(*, keep: Path, newest: int = 8) -> None:
    """Every source edit keys a new mco wheel; keep only the newest few so the cache stays small."""
    olds = sorted((p for p in cache_root().glob("mco-wheel-*") if p.is_dir() and p != keep),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds[newest - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def prepare_wheels(*, fetch_extras: Iterable[str] = ()) -> Wheels:
    """Build (or reuse) the dependency wheelhouse and the mco wheel."""
    from orchestrator.providers.loader import fetch_extras as known_extras

    # What each fetch-at-startup cloud needs on top of the server: its provider's pip extra.
    extras = ["serve", *fetch_extras]
    unknown = set(fetch_extras) - set(known_extras())
    if unknown:
        raise ConfigError(f"packaging.fetch_extras has unknown entries: {', '.join(sorted(unknown))}",
                          hint=f"choose from {', '.join(known_extras())}")
    requirements = image_requirements(extras)
    cache_root().mkdir(parents=True, exist_ok=True)
    deps_dir, deps_cached = _deps_wheelhouse(requirements)
    mco_wheel, mco_cached = _mco_wheel()
    return Wheels(deps_dir, mco_wheel, tuple(requirements), deps_cached, mco_cached)


def prepare_router_wheels() -> Wheels:
    """The router image's wheels: mco's core and the ``router`` extra, without what only the
    CLI uses (``ROUTER_IMAGE_EXCLUDES``)."""
    from packaging.requirements import Requirement

    requirements = [r for r in image_requirements(("router",))
                    if Requirement(r).name.lower() not in ROUTER_IMAGE_EXCLUDES]
    cache_root().mkdir(parents=True, exist_ok=True)
    deps_dir, deps_cached = _deps_wheelhouse(requirements)
    mco_wheel, mco_cached = _mco_wheel()
    return Wheels(deps_dir, mco_wheel, tuple(requirements), deps_cached, mco_cached)
