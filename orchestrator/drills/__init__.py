"""Failover drills: break something real on purpose, measure what clients saw, pass or fail.

    fleet.py         what a drill acts on (``LocalFleet``: processes; ``kind_fleet.KindFleet``: clusters)
    traffic.py       steady open-loop client traffic, recorded request by request (aiohttp)
    scenarios.py     cloud-outage, pod-crash, latency, bad-release, storage-outage, and their objectives
    objectives.py    RTO, client errors, failback: computed from the clients' records
    runner.py        router up, traffic, scenario, measures, report
    report.py        report.json, timeline.png, timeline.html, requests.csv, events.json
    environments.py  local runtime or kind, and why

``mco drill run`` and ``mco demo`` (orchestrator/cli/) are the entry points.
"""
