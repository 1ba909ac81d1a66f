"""The connection layer: one ``ibi.IB`` and its socket, from connect to disconnect.

It owns what every request depends on: the client id (326 "in use" -> the next one), the
reconnect (upkeep.py: Backoff, then the CircuitBreaker), the gateway's error and disconnect
events, the link state of 1100/1101/1102, whether the gateway still answers (liveness.py: a
silent one is given up like a drop), the pacing of every send, request ids, background tasks
and the counters all layers add to. The layers above ask ``pace`` before they send and
``spawn`` what must outlive a call, so ``disconnect`` can cancel it.

A failed connect says whether waiting can fix it (``GatewayUnavailable``) or not
(``NotAGateway``, client ids all in use): see handshake.py; ``run`` waits only for the first.
A close by the gateway or a foreign answer ends the attempt at once, not at
``connect_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Coroutine
from typing import Any

from common.config import IBKRSettings
from supervisor.broker.base import BrokerError, ConnectionLost, GatewayUnavailable
from supervisor.broker.ibkr import errors
from supervisor.broker.ibkr.client import ibi
from supervisor.broker.ibkr.handshake import ANSWER_BYTES, NOT_API, connect_error, handshake_answer
from supervisor.broker.ibkr.liveness import LinkWatch, LivenessPolicy
from supervisor.broker.ibkr.pacing import Backoff, CircuitBreaker, PacingGovernor
from supervisor.broker.ibkr.upkeep import ClientIdsInUse, abort_socket, reconnect_loop, watch_link

# The adapter's one logger, as before it was split into layers: log filters keep working.
log = logging.getLogger("supervisor.broker.ibkr.broker")

MARKET_DATA_TYPES = {"live": 1, "frozen": 2, "delayed": 3, "delayed_frozen": 4}
# startApi + positions, open orders, completed orders, account updates (single and multi),
# executions (+ auto-open-orders for client id 0): sent by ib_insync's connectAsync itself.
CONNECT_MESSAGES = 8
# IBKR's own pacing (gateway 974+), in the handshake ("v157..176 +PACEAPI"): over 50 msg/s
# is delayed, not error 100 and a drop. A backstop; the governor is the budget.
PACE_API = "+PACEAPI"


class _ClientIdInUse(BrokerError):
    pass


class Link:
    """The connection to one gateway; see the module docstring."""

    def __init__(self, cfg: IBKRSettings, pacer: PacingGovernor) -> None:
        self.cfg = cfg
        self.pacer = pacer
        self.backoff = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s, cfg.reconnect_jitter)
        self.breaker = CircuitBreaker(cfg.circuit_failures, cfg.circuit_cooldown_s)
        self.ib = ibi.IB()
        # One governor, not two stacked: ib_insync's own throttle would release queued
        # requests in a burst exactly a second later, which the gateway counts against us.
        self.ib.client.MaxRequests = 0
        self.ib.RaiseRequestErrors = True  # errors on a reqId end its future with the code
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected
        self.ib.client.conn.hasData += self._on_bytes
        self.ib.client.conn.disconnected += self._on_socket_closed
        self.client_id: int | None = None
        self._placed_under: int | None = None  # the client id of the first connection
        self.accounts: list[str] = []
        self.counts: Counter[str] = Counter()  # every layer's *_total counters, for stats
        self._state = "new"  # new | connecting | connected | reconnecting | closed
        self.link_up = True  # False between error 1100 and 1101/1102
        self._id_rejected = asyncio.Event()
        self._attempt_over = asyncio.Event()  # closed, or a foreign answer, mid-handshake
        self._answer = bytearray()  # the first bytes the current connect received
        self._connecting: asyncio.Future[Any] | None = None  # the library's connect, running
        self._connect_lock = asyncio.Lock()
        self._watched: dict[int, list[int]] = {}  # our reqIds -> codes seen on them
        self.data_type = cfg.market_data_type  # what is asked for (delayed after a fallback)
        self.generation = 0  # connections made so far
        # snapshots we cancelled: a 300 on one means its end crossed our cancel (harmless)
        self._cancelled: deque[int] = deque(maxlen=1024)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sent_base = 0
        self._bytes_in = 0
        self.policy = LivenessPolicy(cfg.probe_after_s, cfg.probe_timeout_s)
        self.liveness: LinkWatch | None = None  # this connection's (liveness.py); None: down
        self._heard = asyncio.Event()  # a byte came in, or the link was given up: look again

    # --- connect and disconnect --------------------------------------------------------------

    def is_connected(self) -> bool:
        return self._state == "connected" and self.link_up and self.ib.isConnected()

    async def connect(self) -> None:
        async with self._connect_lock:  # a second caller waits, then finds it connected
            if self.is_connected():
                return
            if self._state == "reconnecting":  # the reconnect loop owns the connection
                raise ConnectionLost(f"reconnecting to {self.where()}; wait for it")
            self._state = "connecting"
            try:
                await self.connect_any_client_id()
            except BrokerError:
                self._state = "new"
                self.counts["connect_failures_total"] += 1
                raise
            self._state = "connected"

    async def disconnect(self) -> None:
        self._state = "closed"
        self.liveness = None
        self._heard.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.ib.isConnected():
            self.ib.disconnect()
        else:
            self.ib.client.disconnect()

    async def connect_any_client_id(self, only: int | None = None) -> None:
        """The configured client id, else the next ones (326 "in use"); ``only``: that one
        (a reconnect keeps the id its orders were placed under)."""
        first = self.cfg.client_id
        last = first + self.cfg.client_id_attempts - 1
        ids = [only] if only is not None else list(range(first, last + 1))
        for client_id in ids:
            try:
                await self._connect_once(client_id)
                if self._placed_under not in (None, client_id):
                    log.error(
                        "reconnected as client id %d, not %d: IBKR lets only the "
                        "placing client id cancel an order, so entries placed before "
                        "cannot be cancelled from here (their exits still work)",
                        client_id,
                        self._placed_under,
                        extra={"event": "client_id_changed", "client_id": client_id},
                    )
                return
            except _ClientIdInUse:
                log.warning(
                    "client id %d is in use at %s (error 326)%s",
                    client_id,
                    self.where(),
                    "; trying the next" if client_id != ids[-1] else "",
                )
        raise ClientIdsInUse(
            f"client ids {ids[0]}..{ids[-1]} are all in use at {self.where()} "
            "(error 326): another session holds them"
        )

    async def _connect_once(self, client_id: int) -> None:
        self._id_rejected.clear()
        self._attempt_over.clear()
        self._answer = bytearray()
        self.link_up = True
        conn = self.ib.client.conn
        self._sent_base += conn.numMsgSent
        conn.numMsgSent = 0
        await self.pacer.acquire(CONNECT_MESSAGES)
        self.ib.client.setConnectOptions(PACE_API)  # ib_insync and ib_async alike
        connecting = asyncio.ensure_future(
            self.ib.connectAsync(
                self.cfg.host, self.cfg.port, clientId=client_id, timeout=self.cfg.connect_timeout_s
            )
        )
        self._connecting = connecting
        rejected = asyncio.ensure_future(self._id_rejected.wait())
        over = asyncio.ensure_future(self._attempt_over.wait())
        try:
            await asyncio.wait({connecting, rejected, over}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (connecting, rejected, over):
                task.cancel()
            # ib_insync's cleanup may itself raise (disconnect before "ready"): collected here
            outcome = (await asyncio.gather(connecting, rejected, over, return_exceptions=True))[0]
            self._connecting = None
        if self._id_rejected.is_set() or isinstance(outcome, BaseException):
            self.ib.client.disconnect()
            if self._id_rejected.is_set():
                raise _ClientIdInUse(f"client id {client_id} in use")
            raise connect_error(
                outcome,
                self.where(),
                self.cfg.connect_timeout_s,
                bytes(self._answer),
                self._attempt_over.is_set(),
            ) from None
        self.client_id = client_id
        if self._placed_under is None:
            self._placed_under = client_id
        self.accounts = list(self.ib.managedAccounts())
        await self._apply_market_data_type()
        if not self.ib.isConnected():  # dropped while we were finishing: no event will come
            raise GatewayUnavailable(
                f"the connection to {self.where()} dropped right after connecting"
            )
        self.breaker.success()
        self.generation += 1  # reqIds start over: what names an older one must not send
        self.liveness = LinkWatch(self.policy, asyncio.get_running_loop().time(), conn.numMsgSent)
        self.spawn(watch_link(self, self.generation))
        log.info(
            "connected to %s as client id %d; accounts %s; market data %s",
            self.where(),
            client_id,
            ",".join(self.accounts),
            self.cfg.market_data_type,
            extra={"event": "broker_connected", "client_id": client_id},
        )

    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    async def _apply_market_data_type(self) -> None:
        await self.pacer.acquire(1)
        if self.ib.isConnected():
            self.ib.reqMarketDataType(MARKET_DATA_TYPES[self.data_type])

    async def fall_back_to_delayed(self, why: str) -> None:
        """From now on delayed data where live is not subscribed (``ibkr.delayed_fallback``)."""
        if self.data_type in ("delayed", "delayed_frozen"):
            return
        self.data_type = "delayed_frozen" if self.data_type == "frozen" else "delayed"
        log.warning(
            "%s: switching to IBKR's delayed market data (ibkr.delayed_fallback); "
            "symbols with a live subscription still get live data",
            why,
            extra={"event": "delayed_fallback"},
        )
        await self._apply_market_data_type()

    # --- reconnect (upkeep.py runs the loop) ----------------------------------------------------

    @property
    def reconnecting(self) -> bool:
        return self._state == "reconnecting"

    def is_up(self) -> bool:
        """Connected as far as the socket goes (a 1100 from the gateway aside)."""
        return self._state == "connected"

    def reconnected(self, failed_attempts: int) -> None:
        self._state = "connected"
        self.counts["reconnects_total"] += 1
        log.warning(
            "reconnected to %s after %d failed attempts",
            self.where(),
            failed_attempts,
            extra={"event": "broker_reconnected"},
        )

    def _on_disconnected(self) -> None:
        if self._state != "connected":
            return  # a failed connect attempt, our own disconnect(), or a silent gateway's
        self._state = "reconnecting"
        self.liveness = None
        self._heard.set()
        self.counts["disconnects_total"] += 1
        log.warning(
            "lost the connection to %s (client id %s); reconnecting",
            self.where(),
            self.client_id,
            extra={"event": "broker_disconnected"},
        )
        self.spawn(reconnect_loop(self))

    # --- liveness: a gateway that stops answering is a lost connection (liveness.py) ---------

    def _holding(self) -> bool:
        watch = self.liveness
        if watch is None or not self.link_up:  # after 1100 the gateway said it is alive
            return False
        now = asyncio.get_running_loop().time()
        watch.counted(now, self.ib.client.conn.numMsgSent)
        return watch.holding(now)

    async def _until_answering(self) -> None:
        while self._holding():
            self._heard.clear()
            await self._heard.wait()
            self.require_connected()

    def probe(self) -> None:
        """Ask the gateway for its time, in a slot the governor has just given: any answer
        (or any other byte) says it is alive."""
        watch = self.liveness
        if watch is None or not self.ib.isConnected():
            return
        now = asyncio.get_running_loop().time()
        watch.counted(now, self.ib.client.conn.numMsgSent)
        if watch.probe_due(now) is None:
            return  # heard meanwhile, or one is out already
        self.ib.client.reqCurrentTime()
        watch.probe_sent(now)
        self.counts["liveness_probes_total"] += 1

    def give_up_silent(self, watch: LinkWatch, now: float) -> None:
        """Close a socket the gateway stopped answering on and reconnect, as for a drop."""
        self._state = "reconnecting"
        self.liveness = None
        self.counts["gateway_silent_total"] += 1
        self.counts["disconnects_total"] += 1
        log.warning(
            "gateway silent for %.0f s: reconnecting to %s (a probe got no answer "
            "within %g s; %d messages unanswered, none sent since)",
            watch.silent_s(now),
            self.where(),
            self.policy.timeout_s,
            watch.unanswered(),
            extra={
                "event": "gateway_silent",
                "silent_s": round(watch.silent_s(now), 1),
                "client_id": self.client_id,
            },
        )
        self._heard.set()  # writes held for the probe now fail with ConnectionLost
        abort_socket(self.ib.client.conn)
        self.spawn(reconnect_loop(self))

    # --- events ------------------------------------------------------------------------------

    def _on_error(self, req_id: int, code: int, message: str, _contract: Any) -> None:
        self.counts[errors.stats_key(code)] += 1
        watched = self._watched.get(req_id)
        if watched is not None:
            watched.append(code)
        ours = watched is not None or (code == errors.NO_SUCH_TICKER and req_id in self._cancelled)
        log.log(
            errors.log_level(code, ours=ours),
            "IBKR %s (reqId %s)",
            errors.describe(code, message),
            req_id,
            extra={"event": "ibkr_error", "code": code, "req_id": req_id},
        )
        if code == errors.CLIENT_ID_IN_USE:
            self._id_rejected.set()
        elif code == errors.LINK_LOST:
            self.link_up = False
        elif code in (errors.LINK_RESTORED, errors.LINK_RESTORED_DATA_LOST):
            self.link_up = True
            if code == errors.LINK_RESTORED_DATA_LOST:  # the gateway forgot our data type
                self.spawn(self._apply_market_data_type())
        elif code == errors.RATE_EXCEEDED:
            log.error("the gateway says we sent over 50 messages/s: a pacing bug")

    def _on_bytes(self, data: bytes) -> None:
        self._bytes_in += len(data)
        if self.liveness is not None:
            self.liveness.heard(asyncio.get_running_loop().time())
            self._heard.set()
        if len(self._answer) < ANSWER_BYTES:  # a connect's first bytes: is it the TWS API?
            self._answer += data[: ANSWER_BYTES - len(self._answer)]
            if handshake_answer(bytes(self._answer)) == NOT_API:
                self._attempt_over.set()

    def _on_socket_closed(self, _message: str) -> None:
        """The gateway closing the socket while the library connects ends the attempt at once.
        Not so our own closes: the library's after its timeout comes once its connect is over,
        and the previous socket's, which it awaits before opening the next, comes before
        anything is sent on the new one (``numMsgSent`` is 0 then)."""
        running = self._connecting is not None and not self._connecting.done()
        if running and self.ib.client.conn.numMsgSent:
            self._attempt_over.set()

    # --- what the layers above send with -----------------------------------------------------

    def require_connected(self) -> None:
        if self.is_connected():
            return
        if self._state == "connected" and not self.link_up:
            raise ConnectionLost(
                "IB Gateway lost its link to IBKR (error 1100); waiting for 1101/1102"
            )
        if self._state in ("reconnecting", "connecting"):
            raise ConnectionLost(f"disconnected from {self.where()}; reconnecting")
        raise ConnectionLost(f"not connected to {self.where()}")

    async def pace(self, n: int = 1) -> None:
        """Pass the governor, and only then check that there is still a link to send on.
        Nothing is written while the gateway is being asked whether it still answers: a slot
        that came meanwhile carries the probe, if none is out yet, or goes unused."""
        while True:
            self.require_connected()
            await self._until_answering()
            await self.pacer.acquire(n)
            self.require_connected()
            if not self._holding():
                return
            self.probe()

    def new_req_id(self) -> int:
        try:
            return self.ib.client.getReqId()
        except ConnectionError:
            raise ConnectionLost(f"not connected to {self.where()}") from None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def watch(self, req_id: int) -> None:
        """Collect the error codes the gateway sends on ``req_id`` (warnings end nothing)."""
        self._watched[req_id] = []

    def cancelled(self, req_id: int) -> None:
        """``req_id``'s cancel is being sent: a 300 for it is expected, not a problem."""
        self._cancelled.append(req_id)

    def codes(self, req_id: int) -> list[int]:
        return self._watched.get(req_id, [])

    def unwatch(self, req_id: int) -> None:
        self._watched.pop(req_id, None)

    def stats(self) -> dict[str, float]:
        """The connection's and the governor's measures (the facade orders all the keys)."""
        client = self.ib.client
        return {
            "connected": 1.0 if self.is_connected() else 0.0,
            "lines_in_use": float(self.pacer.lines_in_use),
            "background_tasks": float(len(self._tasks)),
            "circuit_state": float(self.breaker.state),
            # bytes received but not yet a whole message: the client side of "buffer growth"
            "recv_buffer_bytes": float(len(getattr(client, "_data", b""))),
            "messages_sent_total": float(self._sent_base + client.conn.numMsgSent),
            "bytes_received_total": float(self._bytes_in),
            "paced_messages_total": float(self.pacer.messages_total),
            "pacing_waits_total": float(self.pacer.waits_total),
            "pacing_wait_s_total": round(self.pacer.wait_s_total, 3),
            "line_waits_total": float(self.pacer.line_waits_total),
            "circuit_opened_total": float(self.breaker.opened_total),
        }
