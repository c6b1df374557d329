"""``GlobalEntry``: one DNS name in front of every cloud's routers, on Route 53.

Each cloud's router gets a Route 53 health check on ``/readyz/local`` over HTTPS (200
only while that cloud's own model can serve: a router that is up in front of a dead model
is taken out) and a record with a low TTL pointing at the router's public name:

* ``routing="latency"`` (default): one latency record per cloud (``set_identifier`` = the
  cloud, ``region`` = the AWS region nearest to it); clients get the nearest healthy one;
* ``routing="failover"``: the first endpoint is PRIMARY; the SECONDARY is a CNAME to a
  latency set of the others (``<secondary_label>.<record_name>``), since Route 53 allows
  exactly one primary and one secondary per name.

The failover time is about ``request_interval_s`` x ``failure_threshold`` plus the TTL
(30 s x 3 + 60 s by Route 53's defaults; 10 s x 2 + 30 s here). Refused: a TTL over 60 s
(clients would keep a dead cloud's address), a health check that is not HTTPS, and an
endpoint without a region for latency routing. Azure Traffic Manager and Cloudflare Load
Balancing equivalents are in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi

from components._common import child, refuse, safe_name, sdk_module

__all__ = ["GlobalEntry", "GlobalEntryArgs", "RouterEndpoint"]

MAX_TTL_S = 60


@dataclass(frozen=True)
class RouterEndpoint:
    """One cloud's routers, as the internet reaches them (their load balancer's name)."""

    cloud: str
    fqdn: str                       # e.g. router.aws.example.com (HTTPS, a certificate for this name)
    latency_region: str | None = None  # the AWS region nearest to this cloud's region, e.g. us-central1 -> us-east-2
    port: int = 443


@dataclass(frozen=True)
class GlobalEntryArgs:
    zone_id: str
    record_name: str                # the name clients use, e.g. model.example.com
    endpoints: tuple[RouterEndpoint, ...]
    routing: Literal["latency", "failover"] = "latency"
    ttl_s: int = 30
    health_check_path: str = "/readyz/local"
    request_interval_s: Literal[10, 30] = 10
    failure_threshold: int = 2
    secondary_label: str = "secondary"
    health_check_type: str = "HTTPS"  # refused otherwise: the check must see what clients see
    tags: dict[str, str] = field(default_factory=dict)


class GlobalEntry(pulumi.ComponentResource):
    url: pulumi.Output[str]
    health_check_ids: pulumi.Output[dict[str, str]]
    record_fqdns: pulumi.Output[list[str]]

    def __init__(self, name: str, args: GlobalEntryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"GlobalEntry '{name}'"
        refuse(not args.endpoints, who, "endpoints=[]", "a global entry needs at least one cloud's routers",
               "list each cloud's router name under globalEntry.endpoints")
        refuse(args.ttl_s > MAX_TTL_S, who, f"ttl_s={args.ttl_s}",
               f"clients would keep a failed cloud's address for up to {args.ttl_s} s after its health check fails",
               f"use a TTL of at most {MAX_TTL_S} s (30 by default)")
        refuse(args.health_check_type != "HTTPS", who, f"health_check_type={args.health_check_type}",
               "a plain-HTTP check does not see the certificate or the TLS listener clients use",
               "remove healthCheckType; the routers serve HTTPS")
        refuse(args.routing == "failover" and len(args.endpoints) < 2, who, "routing=failover",
               "failover needs a secondary", "add a second cloud, or use routing: latency")
        latency_set = args.endpoints if args.routing == "latency" else args.endpoints[1:]
        missing = [e.cloud for e in latency_set if not e.latency_region]
        refuse(bool(missing), who, "latency_region", f"latency records need an AWS region for {', '.join(missing)}",
               "set latencyRegion on those endpoints (the AWS region nearest to the cloud's region)")
        super().__init__("mco:dns:GlobalEntry", name, None, opts)
        route53 = sdk_module("pulumi_aws.route53")

        checks: dict[str, pulumi.Output[str]] = {}
        for e in args.endpoints:
            hc = route53.HealthCheck(
                f"{name}-{safe_name(e.cloud)}-check",
                type=args.health_check_type,
                fqdn=e.fqdn,
                port=e.port,
                resource_path=args.health_check_path,
                enable_sni=True,
                request_interval=args.request_interval_s,
                failure_threshold=args.failure_threshold,
                measure_latency=True,
                tags={"managed-by": "mco", "cloud": e.cloud, "Name": f"{args.record_name} {e.cloud}", **args.tags},
                opts=child(self),
            )
            checks[e.cloud] = hc.id

        fqdns: list[str] = []

        def latency_records(record: str, endpoints: tuple[RouterEndpoint, ...]) -> None:
            for e in endpoints:
                route53.Record(
                    f"{name}-{safe_name(record)}-{safe_name(e.cloud)}",
                    zone_id=args.zone_id, name=record, type="CNAME", ttl=args.ttl_s, records=[e.fqdn],
                    set_identifier=e.cloud, health_check_id=checks[e.cloud],
                    latency_routing_policies=[{"region": e.latency_region}],
                    opts=child(self),
                )
            fqdns.append(record)

        if args.routing == "latency":
            latency_records(args.record_name, args.endpoints)
        else:
            primary = args.endpoints[0]
            secondary_name = f"{args.secondary_label}.{args.record_name}"
            latency_records(secondary_name, args.endpoints[1:])
            route53.Record(
                f"{name}-primary", zone_id=args.zone_id, name=args.record_name, type="CNAME", ttl=args.ttl_s,
                records=[primary.fqdn], set_identifier=f"{primary.cloud}-primary",
                health_check_id=checks[primary.cloud], failover_routing_policies=[{"type": "PRIMARY"}],
                opts=child(self),
            )
            # both of a failover pair must have one type: the secondary is a CNAME to the latency
            # set's name in the same zone, which answers only with its healthy records
            route53.Record(
                f"{name}-secondary", zone_id=args.zone_id, name=args.record_name, type="CNAME", ttl=args.ttl_s,
                records=[secondary_name], set_identifier="secondary",
                failover_routing_policies=[{"type": "SECONDARY"}],
                opts=child(self),
            )
            fqdns.insert(0, args.record_name)

        self.url = pulumi.Output.from_input(f"https://{args.record_name}")
        self.health_check_ids = pulumi.Output.all(**checks).apply(dict)
        self.record_fqdns = pulumi.Output.from_input(fqdns)
        self.register_outputs({"url": self.url, "health_check_ids": self.health_check_ids,
                               "record_fqdns": self.record_fqdns})
