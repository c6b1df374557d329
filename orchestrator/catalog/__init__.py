"""The price catalog: prices are data (``data/prices.json``), read by plain functions.

Each entry is keyed ``provider/region`` (or ``local``) and holds the on-demand price per
vCPU-hour, per GB-hour of memory and per GB of internet egress, with the page it was
read from and the date. Nothing here talks to a cloud; refreshing prices means editing
the JSON file (and its ``source``/``date``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from orchestrator.errors import ConfigError

__all__ = ["Price", "catalog_keys", "egress_cost", "hourly_compute_cost", "load_catalog", "price"]


@dataclass(frozen=True)
class Price:
    key: str
    service: str
    vcpu_hour: float
    gb_hour: float
    egress_gb: float
    source: str
    date: str
    currency: str = "USD"


def _default_path() -> Path:
    return Path(str(resources.files("orchestrator.catalog") / "data" / "prices.json"))


@lru_cache(maxsize=4)
def load_catalog(path: str | None = None) -> dict[str, Price]:
    """All entries of the catalog at ``path`` (default: the packaged one)."""
    file = Path(path) if path else _default_path()
    try:
        doc = json.loads(file.read_text())
        currency = doc.get("currency", "USD")
        out: dict[str, Price] = {}
        for key, entry in doc["entries"].items():
            out[key] = Price(key=key, service=str(entry.get("service", "")),
                             vcpu_hour=float(entry["vcpu_hour"]), gb_hour=float(entry["gb_hour"]),
                             egress_gb=float(entry["egress_gb"]), source=str(entry["source"]),
                             date=str(entry["date"]), currency=currency)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"price catalog {file} is unreadable: {exc}",
                          hint="each entry needs vcpu_hour, gb_hour, egress_gb, source and date") from exc
    return out


def catalog_keys() -> list[str]:
    return sorted(load_catalog())


def price(key: str) -> Price:
    """The entry for ``key`` (e.g. ``aws/us-east-1``); a clear error when it is unknown."""
    entries = load_catalog()
    if key not in entries:
        raise ConfigError(f"no price catalog entry '{key}'",
                          hint=f"use one of: {', '.join(sorted(entries))}")
    return entries[key]


def hourly_compute_cost(key: str, *, vcpu: float, memory_gb: float, replicas: int = 1) -> float:
    """What ``replicas`` replicas of ``vcpu`` vCPU and ``memory_gb`` GB cost per hour."""
    p = price(key)
    return replicas * (vcpu * p.vcpu_hour + memory_gb * p.gb_hour)


def egress_cost(key: str, nbytes: float) -> float:
    """What sending ``nbytes`` to the internet costs (1 GB = 10**9 bytes, as billed)."""
    return nbytes / 1e9 * price(key).egress_gb
