"""Host a SimServer on its own event loop in a background thread (for tests and tools).

The sim's loop stays separate from the client's (ib_insync may patch or own its loop), so a
test can drive the real client in the main thread while the gateway runs here::

    with ThreadedSim(scenario) as sim:
        ib.connect("127.0.0.1", sim.port, clientId=1)
        assert sim.stats()["violations_total"] == 0
        assert sim.account()["realized_pnl_today"] == 0.0
        sim.now()   # the session's time: follow it, not the wall clock
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tools.gateway_sim.scenario import Scenario
from tools.gateway_sim.server import SimServer

T = TypeVar("T")


class ThreadedSim:
    def __init__(
        self,
        scenario: Scenario,
        port: int = 0,
        stats_file: str | Path | None = None,
        start_timeout_s: float = 10.0,
        state_file: str | Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.server = SimServer(scenario, stats_file, state_file=state_file)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(port,), name="gateway_sim", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(start_timeout_s):
            raise TimeoutError("gateway_sim did not start in time")
        if self._error is not None:
            raise RuntimeError("gateway_sim failed to start") from self._error

    def _run(self, port: int) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start(port))
        except BaseException as exc:  # reported to the constructor, which raises it
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    @property
    def port(self) -> int:
        return self.server.port

    def now(self) -> float:
        """The sim's session time (thread-safe: a pure function of the monotonic clock)."""
        return self.server.now()

    def call(self, fn: Callable[[], T], timeout_s: float = 5.0) -> T:
        """Run ``fn`` on the sim's loop and return its result (thread-safe state access)."""

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout_s)

    def stats(self) -> dict[str, Any]:
        return self.call(self.server.stats)

    def orders(self) -> list[dict[str, Any]]:
        return self.call(self.server.received_orders)

    def account(self) -> dict[str, Any]:
        """The simulated broker's account now, read on the sim's loop: cash, net_liquidation,
        available_funds, unrealized_pnl, realized_pnl_today, realized_pnl (since start),
        daily_pnl, day_start_ts, and positions (symbol, sec_type, expiry, strike, right,
        con_id, quantity, avg_cost, mark, market_value, unrealized_pnl, realized_pnl_today,
        realized_pnl, daily_pnl), every one ever held, closed ones with quantity 0."""
        return self.call(self.server.account)

    def close(self, timeout_s: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.server.close(), self.loop)
        try:
            future.result(timeout_s)
        finally:
            self.loop.call_soon_threadsafe(self._stop)
            self._thread.join(timeout_s)

    def _stop(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.stop()

    def __enter__(self) -> ThreadedSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
