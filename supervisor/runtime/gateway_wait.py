"""Start waits for the gateway: a ``run`` begun before IB Gateway answers probes it on the
reconnect policy until it does, as a mid-run outage is waited out.

    Supervisor._start --> connect() --> GatewayWait.connect() --> broker.connect(), repeated
        connected                               --> True (an outage's end alerted once)
        GatewayUnavailable (refused, no answer, closed unanswered, answered but not ready)
            first time: one WARNING "waiting for the gateway at H:P …", one alert (not
                        when a restart comes inside an outage already alerted:
                        runtime/outages.py), and on_waiting() (status "waiting for
                        gateway", systemd STATUS=)
            then: a progress line after 1, 3, 7, 15 min, then every 15, never per probe
            the next probe after Backoff (1 s doubling to reconnect_max_s, with jitter), or,
            after circuit_failures in a row, every circuit_cooldown_s (CircuitBreaker)
            ibkr.connect_wait_s passed (0: never; judged between probes, so at most one
            connect_timeout_s late) --> GatewayAbsent: exit 3, naming both
        anything else (NotAGateway, client ids all in use) --> raised at once: exit 3
        stop (SIGTERM / Ctrl-C) --> False at once, mid-probe or mid-pause

IB Gateway restarts every day (IBC) and after every weekly login, and a 2FA login can take
hours: exiting 3 there would have systemd or compose restart the bot every 10 s, each start
alerting again. Time is injected (``clock``, ``sleep`` and ``rng``; the breaker runs on
``clock`` too), so the tests drive the policy without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from common.config import IBKRSettings
from supervisor.broker.base import Broker, BrokerError, GatewayUnavailable
from supervisor.broker.retry import Backoff, CircuitBreaker
from supervisor.observe.alerts import Alerter
from supervisor.runtime.outages import OutageAlerts
from supervisor.runtime.status import duration
from supervisor.runtime.waits import pause, unless_stopped

log = logging.getLogger("supervisor.runtime.loop")

FIRST_PROGRESS_S = 60.0  # the first "still waiting" line; each next one twice as late ...
MAX_PROGRESS_S = 900.0  # ... up to one every 15 minutes (a weekend is ~250 lines, not 10,000)


class GatewayAbsent(BrokerError):
    """``ibkr.connect_wait_s`` passed without a gateway: exit 3."""


class GatewayWait:
    """Connect, waiting for a gateway that is not there yet; see the module docstring."""

    def __init__(
        self,
        stop: asyncio.Event,
        broker: Broker,
        cfg: IBKRSettings,
        alerter: Alerter,
        on_waiting: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[asyncio.Event, float], Awaitable[None]] = pause,
        rng: random.Random | None = None,
        outages: OutageAlerts | None = None,
    ) -> None:
        self.stop = stop
        self.broker = broker
        self.cfg = cfg
        self.alerter = alerter
        self.outages = outages or OutageAlerts(alerter, None)  # no journal: each one alerted
        self.on_waiting = on_waiting
        self.clock = clock
        self.sleep = sleep
        self.backoff = Backoff(
            cfg.reconnect_initial_s, cfg.reconnect_max_s, cfg.reconnect_jitter, rng
        )
        self.breaker = CircuitBreaker(cfg.circuit_failures, cfg.circuit_cooldown_s, clock)
        self.where = f"{cfg.host}:{cfg.port}"
        self.failures = 0
        self._started = 0.0
        self._next_progress_s = FIRST_PROGRESS_S
        self._progress_every_s = FIRST_PROGRESS_S

    async def connect(self) -> bool:
        """True once connected, False if a stop came first; raises GatewayAbsent after
        ``connect_wait_s``, and at once whatever waiting cannot fix."""
        self._started = self.clock()
        while True:
            try:
                if not await unless_stopped(self.stop, self.broker.connect()):
                    return False
            except GatewayUnavailable as exc:
                self._failed(exc)
                if not await self._pause_before_next_probe(exc):
                    return False
                continue
            self.outages.up(self.where)  # an outage alerted before (this start's or not)
            if self.failures:
                log.info(
                    "the gateway at %s answered after %s of waiting (%d probes)",
                    self.where,
                    duration(self.clock() - self._started),
                    self.failures + 1,
                    extra={"event": "gateway_answered", "probes": self.failures + 1},
                )
            return True

    def _failed(self, exc: GatewayUnavailable) -> None:
        self.failures += 1
        self.breaker.failure()
        waited_s = self.clock() - self._started
        if self.failures == 1:
            limit = (
                f"for up to {self.cfg.connect_wait_s:g}s (ibkr.connect_wait_s)"
                if self.cfg.connect_wait_s
                else "until it answers (ibkr.connect_wait_s: 0)"
            )
            log.warning(
                "waiting for the gateway at %s %s: %s; probing again after %gs "
                "doubling to %gs, then every %gs after %d failures in a row",
                self.where,
                limit,
                exc,
                self.cfg.reconnect_initial_s,
                self.cfg.reconnect_max_s,
                self.cfg.circuit_cooldown_s,
                self.cfg.circuit_failures,
                extra={"event": "gateway_waiting", "where": self.where},
            )
            self.outages.down(
                f"waiting for the gateway at {self.where}: {exc}", {"where": self.where}
            )
            self.on_waiting(f"waiting for the gateway at {self.where}")
        elif waited_s >= self._next_progress_s:
            log.info(
                "still waiting for the gateway at %s: %s, %d probes; the last: %s",
                self.where,
                duration(waited_s),
                self.failures,
                exc,
                extra={"event": "gateway_waiting_progress", "probes": self.failures},
            )
            self._progress_every_s = min(self._progress_every_s * 2, MAX_PROGRESS_S)
            self._next_progress_s = waited_s + self._progress_every_s

    async def _pause_before_next_probe(self, exc: GatewayUnavailable) -> bool:
        """The reconnect policy's pause, cut short by the wait's end; False on a stop."""
        delay_s = (
            self.breaker.remaining_s()
            if not self.breaker.allow()
            else self.backoff.delay(self.failures - 1)
        )
        if self.cfg.connect_wait_s:
            left_s = self._started + self.cfg.connect_wait_s - self.clock()
            if left_s <= 0:
                raise GatewayAbsent(
                    f"no gateway at {self.where} after {duration(self.cfg.connect_wait_s)} "
                    f"(ibkr.connect_wait_s: {self.cfg.connect_wait_s:g}; 0 waits until it "
                    f"answers); the last attempt: {exc}"
                )
            delay_s = min(delay_s, left_s)
        await self.sleep(self.stop, delay_s)
        if self.stop.is_set():
            log.info(
                "stopped while waiting for the gateway at %s",
                self.where,
                extra={"event": "stopped_starting"},
            )
            return False
        return True


async def connect(
    stop: asyncio.Event,
    broker: Broker,
    cfg: IBKRSettings,
    alerter: Alerter,
    on_waiting: Callable[[str], None] | None,
    outages: OutageAlerts | None = None,
) -> bool:
    """The broker's connection; False if a stop came first. With ``on_waiting`` (``run``) a
    gateway not there yet is waited for; without it (phases, the tools) the first failure is
    raised (exit 3), as check and reconcile do."""
    if on_waiting is None:
        return await unless_stopped(stop, broker.connect())
    return await GatewayWait(stop, broker, cfg, alerter, on_waiting, outages=outages).connect()
