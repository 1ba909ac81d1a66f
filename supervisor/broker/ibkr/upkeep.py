"""Keeping the link up: the reconnect loop after a drop, and the liveness watch while up.

    drop, or a silent gateway --> reconnect_loop: Backoff between attempt starts, then the
                                  CircuitBreaker (retry.py); the same client id for a while
    connected -----------------> watch_link: LinkWatch (liveness.py) says when to probe and
                                 when the gateway is silent; the link then gives the socket up

Both run as the link's background tasks (``Link.spawn``), so ``disconnect`` cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from supervisor.broker.base import BrokerError
from supervisor.broker.retry import CircuitBreaker

if TYPE_CHECKING:
    from supervisor.broker.ibkr.link import Link

log = logging.getLogger("supervisor.broker.ibkr.broker")  # the adapter's one logger
WATCH_TICK_S = 0.25  # the watch reads the library's counts at least this often


class ClientIdsInUse(BrokerError):
    """Every client id tried is in use (326): the gateway answered; it still holds them."""


@dataclass
class _Outage:
    """What one outage has counted so far, from the drop to the connect that ends it."""

    lost_at: float
    attempt: int = 0  # the backoff's step (a 326 starts it over)
    failed: int = 0
    spent: float = 0.0  # the last attempt's own duration
    announced: bool = False  # the open circuit is said once per outage, not every probe


async def reconnect_loop(
    link: Link,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Connect again until it works or the link is closed. The backoff spaces attempt
    *starts*: an attempt that itself waited ``connect_timeout_s`` on a gateway that accepts
    the socket but does not answer (hung, stopped) has waited, so the next one follows at
    once, and a gateway that wakes up finds an attempt waiting for it. A 326 is an answer:
    the gateway still holds the dead socket's client id, so it is asked again soon. (``clock``
    and ``sleep``: for tests; the breaker's clock must be the same.)"""
    outage = _Outage(lost_at=clock())
    breaker = link.breaker
    while link.reconnecting:
        if not breaker.allow():
            _say_circuit_open(link, outage)
            await sleep(breaker.remaining_s())
            continue
        if breaker.state != CircuitBreaker.HALF_OPEN:
            await sleep(max(0.0, link.backoff.delay(outage.attempt) - outage.spent))
        if not link.reconnecting:
            return
        started = clock()
        keep = started - outage.lost_at < link.cfg.reconnect_same_client_id_s
        try:
            await link.connect_any_client_id(link.client_id if keep else None)
        except Exception as exc:  # every failure counts; the loop is the retry
            _attempt_failed(link, outage, exc, started, clock())
            continue
        if not link.reconnecting:  # disconnect() was called meanwhile
            link.ib.disconnect()
            return
        link.reconnected(outage.failed)
        return


def _say_circuit_open(link: Link, outage: _Outage) -> None:
    if not outage.announced:
        log.error(
            "%s unreachable after %d failed connects: probing every %.0f s",
            link.where(),
            link.breaker.failures,
            link.cfg.circuit_cooldown_s,
            extra={"event": "broker_circuit_open"},
        )
        outage.announced = True


def _attempt_failed(
    link: Link, outage: _Outage, exc: Exception, started: float, ended: float
) -> None:
    """Count a failed connect: a 326 is the gateway answering (the backoff starts over, the
    breaker hears a success); anything else steps the backoff and the breaker on."""
    outage.spent = ended - started
    outage.failed += 1
    if isinstance(exc, ClientIdsInUse):
        outage.attempt = 0
        link.breaker.success()
    else:
        outage.attempt += 1
        link.breaker.failure(started_at=started)
    link.counts["connect_failures_total"] += 1
    log.log(
        logging.DEBUG if outage.announced else logging.WARNING,
        "reconnect attempt %d failed: %s",
        outage.failed,
        exc,
        exc_info=not isinstance(exc, BrokerError),
    )


async def watch_link(link: Link, generation: int) -> None:
    """Probe when the link's ``LinkWatch`` says so; give the connection up when silent."""
    loop = asyncio.get_running_loop()
    while link.generation == generation and link.is_up():
        watch = link.liveness
        if watch is None:
            return
        now = loop.time()
        watch.counted(now, link.ib.client.conn.numMsgSent)
        if not link.link_up:
            watch.heard(now)  # its 1100 came from it: waiting for 1101/1102, not silence
        elif watch.silent(now):
            link.give_up_silent(watch, now)
            return
        elif watch.probe_due(now) is not None and watch.probe_at is None:
            await link.pacer.acquire(1)  # the governor owns every byte, probes too
            if link.generation == generation and link.is_up():
                link.probe()
            continue
        await asyncio.sleep(min(max(watch.wake_in(now), 0.01), WATCH_TICK_S))


def abort_socket(conn: Any) -> None:
    """Reset, not close: what the kernel still holds for a gateway that does not read is
    discarded (SO_LINGER 0), not delivered in a burst when it wakes up. The library then
    fails every pending request as for a drop (ConnectionError)."""
    transport = getattr(conn, "transport", None)
    if transport is None:
        conn.disconnect()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already gone: nothing left to discard
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
