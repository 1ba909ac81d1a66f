"""One client connection: handshake, rate rule, dispatch, per-request tasks, faults.

A session is the socket's asyncio protocol, but its reading is done by an ``ArrivalReader``
thread that hands on each frame with the time it reached the socket (for the 50 messages/s
rule: a stall of the sim's own loop or of that thread must not bunch the client's messages,
see arrivals.py). The session reassembles frames and hands each message to its handler in
order. Handlers answer at once or spawn a task (latency, snapshots, streams); every task is
tracked and cancelled when the connection ends. Order-book messages (place, cancel, open /
completed orders, executions, global cancel) go through ``in_order`` instead: one queue per
connection, carried out in arrival order by tasks of the server, so an order the gateway has
read is placed (or rejected) even if its client has gone by then, as IBKR keeps it. ``link``
models the gateway's link to IBKR: error 1100 clears it (data requests wait), 1101/1102 set
it again (1101 also drops the streaming subscriptions). A client that connected with
``+PACEAPI`` is paced instead of dropped: what is over the rate is handled late
(``ApiPacer``), in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tools.gateway_sim import outgoing as out
from tools.gateway_sim.arrivals import ArrivalReader
from tools.gateway_sim.codec import (
    FieldReader,
    FieldValue,
    FrameBuffer,
    ProtocolError,
    encode_message,
)
from tools.gateway_sim.faults import FaultPlan
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.rules import ApiPacer, RateWindow
from tools.gateway_sim.scenario import FaultSpec

if TYPE_CHECKING:
    from tools.gateway_sim.server import SimServer

log = logging.getLogger("gateway_sim.session")
MIN_CLIENT_VERSION = 157
LINGER_S = 0.5
PACE_API = "+PACEAPI"  # the connect option asking the gateway to pace, not drop (rules.py)
Handler = Callable[["Session", FieldReader], None]


@dataclass
class Subscription:
    req_id: int
    inst: Instrument
    snapshot: bool
    task: asyncio.Task[None] | None = None


class Session(asyncio.Protocol):
    """asyncio protocol for one socket; a reader thread stamps each frame on arrival."""

    def __init__(self, server: SimServer, serial: int) -> None:
        self.server = server
        self.serial = serial
        self.transport: asyncio.Transport | None = None
        self.frames = FrameBuffer()
        self.version = 0
        self.client_id: int | None = None
        self.md_type = 1
        rules = server.scenario.rules
        self.rate = RateWindow(rules.max_messages_per_s, 1.0 - rules.rate_window_tolerance_s)
        self.rate_tripped = False
        self.pacer: ApiPacer | None = None  # set by the handshake for a +PACEAPI client
        self.paced: deque[tuple[float, int, list[str]]] = deque()  # (when, msg id, fields)
        self.pace_timer: asyncio.TimerHandle | None = None
        self.dropping = False
        self.ended = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.subscriptions: dict[int, Subscription] = {}
        self.pending_history: dict[int, asyncio.Task[Any]] = {}
        self.link = asyncio.Event()
        self.link.set()
        self.wants_positions = False
        self.wants_account = False
        self.faults: FaultPlan | None = None
        self.order_queue_tail: asyncio.Task[None] | None = None  # the last in_order step
        self.reader: ArrivalReader | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.session_started(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            transport.pause_reading()  # the reader thread reads and stamps instead
            self.reader = ArrivalReader(
                sock, asyncio.get_running_loop(), self.chunk_arrived, self._close
            )
            self.reader.start()

    def data_received(self, data: bytes) -> None:
        self.chunk_arrived(data, time.monotonic())  # only without a reader thread

    def chunk_arrived(self, data: bytes, arrived: float) -> None:
        if self.ended:
            return
        self.frames.feed(data)
        try:
            if not self.frames.handshaken and not self._handshake():
                return
            for fields in self.frames.messages():
                self.on_message(fields, arrived)
        except ProtocolError as exc:
            log.warning("protocol error from client %s: %s", self.client_id, exc)
            self.drop(graceful=False)

    def peer_gone(self) -> bool:
        """The client has closed its socket (the kernel holds its FIN), seen or not."""
        return self.reader.peer_closed() if self.reader is not None else False

    def eof_received(self) -> bool | None:
        log.debug("client %s closed its side", self.client_id)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ended:
            return
        self.ended = True
        if self.reader is not None:
            self.reader.stop()
        if self.faults:
            self.faults.cancel()
        if self.pace_timer is not None:
            self.pace_timer.cancel()
        self.paced.clear()
        for task in list(self.tasks):
            task.cancel()
        self.server.session_ended(self)

    def _handshake(self) -> bool:
        offer = self.frames.handshake()
        if offer is None:
            return False
        low, high, options = offer
        if PACE_API in options.split():
            self.pacer = ApiPacer(self.rate.limit, self.rate.window_s)
        self.version = min(self.server.scenario.server_version, high)
        if self.version < max(low, MIN_CLIENT_VERSION):
            log.warning("client versions v%d..%d not supported", low, high)
            self.drop(graceful=False)
            return False
        moment = datetime.fromtimestamp(self.server.market.now(), self.server.clock.zone)
        stamp = moment.strftime("%Y%m%d %H:%M:%S %Z")
        self.send([self.version, stamp])
        log.debug("handshake v%d (client v%d..%d %s)", self.version, low, high, options)
        return True

    def drop(self, delay_s: float = 0.0, graceful: bool = True) -> None:
        """Stop serving and close the socket after ``delay_s``.

        Graceful: half-close (FIN) first and keep draining what the client still sends, so
        the answers already written (an error 100 or 326) reach it instead of being lost to
        a reset; the socket is closed for good ``LINGER_S`` later. Not graceful: close now.
        """
        if self.dropping:
            return
        self.dropping = True
        if graceful:
            asyncio.get_running_loop().call_later(delay_s, self._half_close)
        else:
            self._close()

    def _half_close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):
            if self.transport.can_write_eof():
                self.transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_S, self._close)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # ---- messages -----------------------------------------------------------------------------
    def on_message(self, fields: list[str], arrived: float | None = None) -> None:
        if not fields:
            return
        msg_id = int(fields[0]) if fields[0].lstrip("-").isdigit() else -1
        at = time.monotonic() if arrived is None else arrived
        in_window = self.rate.add(at)  # what the client sent, paced or not
        wall = time.time() - (time.monotonic() - at)
        self.server.counters.message_in(msg_id, in_window, wall)
        if self.dropping:  # closing: counted, drained and discarded (no reset, no answer)
            return
        if self.pacer is not None:
            self._pace(msg_id, fields, at)
            return
        if self.rate.exceeded(in_window):
            self._rate_violation()
            if self.dropping:
                return
        elif in_window <= self.rate.limit // 2:
            self.rate_tripped = False
        self._dispatch(msg_id, fields)

    def _pace(self, msg_id: int, fields: list[str], arrived: float) -> None:
        """+PACEAPI: handle the message when the gateway's window has room for it."""
        assert self.pacer is not None
        when = self.pacer.admit(arrived)
        if not self.paced and when <= arrived:
            self._dispatch(msg_id, fields)
            return
        self.paced.append((when, msg_id, fields))
        self.server.counters.paced(when - arrived)
        if self.pace_timer is None:
            self._handle_paced()

    def _handle_paced(self) -> None:
        self.pace_timer = None
        now = time.monotonic()
        while self.paced and self.paced[0][0] <= now and not self.dropping:
            _when, msg_id, fields = self.paced.popleft()
            self._dispatch(msg_id, fields)
        if self.paced and not self.dropping:
            self.pace_timer = asyncio.get_running_loop().call_later(
                self.paced[0][0] - now, self._handle_paced
            )

    def _dispatch(self, msg_id: int, fields: list[str]) -> None:
        if self.client_id is None and msg_id != 71:
            log.debug("message %s before startApi ignored", msg_id)
            return
        handler = self.server.handlers.get(msg_id)
        if handler is None:
            log.info("unsupported message id %s from client %s", msg_id, self.client_id)
            return
        try:
            handler(self, FieldReader(fields))
        except ProtocolError as exc:
            log.warning("bad message %s from client %s: %s", msg_id, self.client_id, exc)
            self.error(-1, 320, f"Error reading request: {exc}")
        except Exception:  # a sim bug: keep serving the connection, but loudly
            log.exception("handler for message %s failed; fields=%s", msg_id, fields[:20])
            self.error(-1, 320, f"Error reading request: message {msg_id} failed in the sim")

    def _rate_violation(self) -> None:
        if self.rate_tripped:
            return
        self.rate_tripped = True
        self.error(-1, 100)
        if self.server.scenario.rules.drop_on_rate_violation:
            log.warning(
                "client %s over %d msg/s: dropping the connection", self.client_id, self.rate.limit
            )
            self.drop()

    def send(self, fields: list[FieldValue]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(encode_message(fields))
        self.server.counters.bump("messages_sent")

    def error(self, req_id: int, code: int, message: str = "") -> None:
        self.server.counters.error_sent(code)
        self.send(out.error(req_id, code, message))

    def in_order(self, step: Callable[[], None], latency: str | None = None) -> None:
        """Carry out ``step`` once every order-book message this connection sent before it has
        been carried out, then ``latency`` (a latency kind) later. IBKR handles one
        connection's messages in order: a cancel sent after a place finds the order, a
        bracket's parent is placed before its children. The steps are tasks of the server,
        not of this session: what the gateway has read it carries out even if the client is
        gone by then (answers to a gone client go nowhere; the orders stay, under its client
        id). With nothing queued and no latency the step runs at once."""
        previous = self.order_queue_tail
        if latency is None and (previous is None or previous.done()):
            step()
            return

        async def turn() -> None:
            if previous is not None:
                await asyncio.wait([previous])  # never raises: a failed step was logged
            if latency is not None:
                await self.delay(latency)
            step()

        self.order_queue_tail = self.server.keep(turn())

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("request task failed", exc_info=task.exception())

    async def delay(self, kind: str) -> None:
        seconds = self.server.scenario.latency.of(kind, self.server.latency_rng)
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def data_ready(self, kind: str) -> None:
        """Latency, then wait while the gateway's link to IBKR is down (after 1100)."""
        await self.delay(kind)
        await self.link.wait()

    # ---- faults -------------------------------------------------------------------------------
    def start_faults(self) -> None:
        assert self.client_id is not None
        self.faults = FaultPlan(
            self.server.scenario.faults, self.server, self.serial, self.client_id, self.fire_fault
        )
        self.faults.start()

    def fire_fault(self, fault: FaultSpec) -> None:
        log.info("fault for client %s: %s %s", self.client_id, fault.kind, fault.code or "")
        if fault.kind == "disconnect":
            self.drop(graceful=False)
            return
        code = fault.code or 0
        self.error(fault.req_id, code, fault.message)
        if code == 1100:
            self.link.clear()
        elif code in (1101, 1102):
            if code == 1101:
                self.drop_streams()
            self.link.set()

    def fault_state(self, kind: str, inst: Instrument) -> FaultSpec | None:
        return self.faults.state(kind, inst) if self.faults else None

    def drop_streams(self) -> None:
        for req_id, sub in list(self.subscriptions.items()):
            if not sub.snapshot:
                self.end_subscription(req_id)

    def end_subscription(self, req_id: int) -> Subscription | None:
        sub = self.subscriptions.pop(req_id, None)
        if sub is None:
            return None
        if sub.task is not None and sub.task is not asyncio.current_task():
            sub.task.cancel()
        self.server.release_line(self, req_id)
        return sub
