"""Scenario faults for one connection: timed events and symbol states.

Events (``disconnect``, ``error`` with a code) fire at ``at_s`` seconds after the client's
startApi, or when its ``after_mktdata_requests``-th market-data request arrives. Symbol states
(no market data, no security definition, a snapshot that never ends, historical data that never
answers) apply from their trigger until ``until_s``. Unless ``every_connection`` is set, a fault
belongs to the first connection it matched, so a reconnecting client is not hit again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.scenario import SYMBOL_FAULTS, FaultSpec


class FaultOwners(Protocol):
    """Server-wide record of which connection a one-shot fault belongs to."""

    def claim(self, index: int, serial: int) -> bool: ...


class FaultPlan:
    def __init__(
        self,
        faults: list[FaultSpec],
        owners: FaultOwners,
        serial: int,
        client_id: int,
        fire: Callable[[FaultSpec], None],
    ) -> None:
        self.fire = fire
        self.started = time.monotonic()
        self.md_requests = 0
        self.mine: list[tuple[int, FaultSpec]] = []
        for index, fault in enumerate(faults):
            if fault.client_id is not None and fault.client_id != client_id:
                continue
            if fault.every_connection or owners.claim(index, serial):
                self.mine.append((index, fault))
        self.handles: list[asyncio.TimerHandle] = []

    def start(self) -> None:
        """Schedule the timed events (call on the sim's loop after startApi)."""
        loop = asyncio.get_running_loop()
        for _index, fault in self.mine:
            if fault.kind in SYMBOL_FAULTS or fault.after_mktdata_requests is not None:
                continue
            self.handles.append(loop.call_later(fault.at_s or 0.0, self.fire, fault))

    def on_market_data_request(self) -> None:
        self.md_requests += 1
        for _index, fault in self.mine:
            if fault.kind not in SYMBOL_FAULTS and fault.after_mktdata_requests == self.md_requests:
                self.fire(fault)

    def state(self, kind: str, inst: Instrument) -> FaultSpec | None:
        """The active symbol fault of this kind for the instrument, if any."""
        elapsed = time.monotonic() - self.started
        for _index, fault in self.mine:
            if fault.kind != kind or fault.symbol != inst.symbol:
                continue
            if fault.sec_type not in ("ANY", inst.sec_type):
                continue
            if fault.at_s is not None and elapsed < fault.at_s:
                continue
            if (
                fault.after_mktdata_requests is not None
                and self.md_requests < fault.after_mktdata_requests
            ):
                continue
            if fault.until_s is not None and elapsed >= fault.until_s:
                continue
            return fault
        return None

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()
        self.handles.clear()
