"""The data plane's own saturation measure (router/dataplane/overload.py), on a real event loop."""

from __future__ import annotations

import asyncio
import time

from orchestrator.router.dataplane.overload import LoopMonitor


def test_a_single_stall_is_remembered_for_blame_but_is_not_saturation():
    async def scenario() -> tuple[bool, bool, bool]:
        mon = LoopMonitor(shed_lag_s=0.1, stall_s=0.1)
        mon.start()
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.12)
        before = loop.time()
        quiet = mon.stalled_since(before)
        time.sleep(0.3)
        await asyncio.sleep(0.06)
        stalled = mon.stalled_since(before)
        saturated = mon.saturated()
        mon.stop()
        return quiet, stalled, saturated

    quiet, stalled, saturated = asyncio.run(scenario())
    assert not quiet and stalled and not saturated


def test_sustained_lag_with_the_cpu_busy_is_saturation_and_it_ends():
    async def scenario() -> tuple[bool, bool]:
        mon = LoopMonitor(shed_lag_s=0.05, stall_s=1.0)
        mon.start()
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # the router's own work: 0.1 s of CPU between ticks
            t = time.process_time() + 0.1
            while time.process_time() < t:
                pass
            await asyncio.sleep(0)
        busy = mon.saturated()
        await asyncio.sleep(0.2)
        calm = mon.saturated()
        mon.stop()
        return busy, calm

    busy, calm = asyncio.run(scenario())
    assert busy and not calm
