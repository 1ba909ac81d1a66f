"""The simulated IB Gateway: an asyncio TCP server on 127.0.0.1 speaking the TWS API.

::

   ib_insync IB / any TWS API client                 SimServer (one asyncio loop)
   ---------------------------------                 -------------------------------------
   connect 127.0.0.1:port  -------- TCP -------->    accept -> Session (one per socket)
   "API\\0" + "v157..176"   ------------------->      handshake: "176", connection time
                           <-------------------
   startApi(71, clientId)  ------------------->      client id in use? -> 326, close
                           <-------------------      managedAccounts 15, nextValidId 9,
                                                     farm notices 2104/2106/2158
   requests (framed fields) ------------------>      RateWindow (100) -> handler by msg id
                                                       |-> Market (prices, chains, bars)
                                                       |-> LineBook (101), pacing (162)
                                                       |-> OrderBook (paper fills)
                                                       |     `-> Ledger (cash, P&L)
                                                       |-> Feeds (account, PnL pushes)
                           <-------------------      answers, ticks, errors (message 4)
   close / fault           <------------------>      Session ends: lines released,
                                                     stats file written; its order steps
                                                     still queued (Session.in_order) are
                                                     carried out: orders outlive a client

Everything runs on one event loop; ``ThreadedSim`` (threaded.py) hosts it in a thread for
tests. The server only ever binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Coroutine
from datetime import date
from pathlib import Path
from typing import Any

from tools.gateway_sim.feeds import Feeds
from tools.gateway_sim.handlers import all_handlers
from tools.gateway_sim.hours import SessionClock
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.market import Market
from tools.gateway_sim.orders import OrderBook
from tools.gateway_sim.persist import StateFile
from tools.gateway_sim.positions import Position
from tools.gateway_sim.rules import HistoricalPacing, LineBook
from tools.gateway_sim.scenario import Scenario
from tools.gateway_sim.session import Session
from tools.gateway_sim.simclock import ScenarioClock
from tools.gateway_sim.stats import Stats, write_stats_file

log = logging.getLogger("gateway_sim")
HOST = "127.0.0.1"


class SimServer:
    def __init__(
        self,
        scenario: Scenario,
        stats_file: str | Path | None = None,
        order_log: str | Path | None = None,
        state_file: str | Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.stats_file = Path(stats_file) if stats_file else None
        self.order_log = Path(order_log) if order_log else None
        self.clock = SessionClock(scenario.session)
        self.time = ScenarioClock(scenario.clock)  # the session starts when the server does
        self.market = Market(scenario, self.clock, self.time)
        self.counters = Stats()
        self.latency_rng = random.Random(scenario.seed)  # the latencies' spreads
        self.lines = LineBook(scenario.rules.max_market_data_lines)
        self.hist_pacing = HistoricalPacing(scenario.rules)
        self.handlers = all_handlers()
        self.orders = OrderBook(
            scenario, self.market, self.counters, self._order_event, self._position_changed
        )
        self.feeds = Feeds(self)
        self.clients: dict[int, Session] = {}
        self.sessions: set[Session] = set()
        self._next_order_id = scenario.orders.next_order_id
        self._fault_owners: dict[int, int] = {}
        self._serial = 0
        self._kept: set[asyncio.Task[Any]] = set()  # order steps that outlive their session
        self._server: asyncio.Server | None = None
        self.port = 0
        self._load_positions()
        self.state = StateFile(Path(state_file)) if state_file else None
        if self.state is not None:
            self.state.load(self.orders, self.now())

    # ---- start / stop -------------------------------------------------------------------------
    async def start(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, HOST, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.orders.start()  # the close timer: DAY orders expire, options settle
        if self.orders.active_for(None):  # restored working orders go on matching
            self.orders._ensure_matcher()
        log.info(
            "gateway_sim listening on %s:%d (scenario %s, %s)",
            HOST,
            self.port,
            self.scenario.name,
            self._clock_text(),
        )
        return self.port

    def _clock_text(self) -> str:
        spec = self.scenario.clock
        if spec.start is None:
            return "wall clock"
        step = f", market steps of {spec.market_step_s:g}s" if spec.market_step_s else ""
        return f"session pinned at {spec.start.isoformat()}, rate {spec.rate:g}x{step}"

    def now(self) -> float:
        """Sim time (epoch seconds): what every quote, bar and expiry is computed for."""
        return self.time.now()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.drop(graceful=False)
        for task in list(self._kept):
            task.cancel()
        self.orders.close()
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0.01)  # let the closed sockets report connection_lost
        self.save_state()
        self.write_stats()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    def _new_session(self) -> Session:
        self._serial += 1
        return Session(self, self._serial)

    # ---- sessions -----------------------------------------------------------------------------
    def session_started(self, session: Session) -> None:
        self.sessions.add(session)
        self.counters.bump("connections_total")
        self.counters.bump("connections_open")

    def register_client(self, session: Session, client_id: int) -> bool:
        holder = self.clients.get(client_id)
        if holder is not None and holder.peer_gone():
            # its client closed before this one connected; our reader thread has just not
            # said so yet: the id is free, as IBKR sees it once the FIN is in
            holder.drop(graceful=False)
            holder.connection_lost(None)
        if client_id in self.clients:
            return False
        session.client_id = client_id
        self.clients[client_id] = session
        return True

    def session_ended(self, session: Session) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self.feeds.forget(session)
        self.counters.bump("connections_open", -1)
        if session.client_id is not None and self.clients.get(session.client_id) is session:
            del self.clients[session.client_id]
            released = self.lines.release_client(session.client_id)
            if released:
                self.counters.lines(len(self.lines))
        self.write_stats()

    def keep(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task that outlives the session that started it (an order step the gateway has
        read: Session.in_order); only close() cancels it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._kept.add(task)
        task.add_done_callback(self._kept_done)
        return task

    def _kept_done(self, task: asyncio.Task[None]) -> None:
        self._kept.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("order step failed", exc_info=task.exception())

    def claim(self, index: int, serial: int) -> bool:
        """A one-shot fault belongs to the first connection that claims it."""
        return self._fault_owners.setdefault(index, serial) == serial

    def next_order_id(self) -> int:
        used = [oid for _cid, oid in self.orders.orders]
        used += [oid for _cid, oid in self.orders.what_if_ids]
        self._next_order_id = max([self._next_order_id, *(u + 1 for u in used)])
        return self._next_order_id

    # ---- market-data lines --------------------------------------------------------------------
    def acquire_line(self, session: Session, req_id: int) -> bool:
        ok = self.lines.acquire((session.client_id or 0, req_id))
        self.counters.lines(len(self.lines))
        return ok

    def release_line(self, session: Session, req_id: int) -> None:
        if self.lines.release((session.client_id or 0, req_id)):
            self.counters.lines(len(self.lines))

    # ---- orders and positions -----------------------------------------------------------------
    def send_to_client(self, client_id: int, fields: list[Any]) -> None:
        """To the connection holding ``client_id`` now (none: the client is gone and the
        message with it, as IBKR's; a later connection with that id gets the later ones)."""
        session = self.clients.get(client_id)
        if session is not None:
            session.send(fields)

    def _order_event(self, client_id: int, fields: list[Any]) -> None:
        """An order message: the state file first holds what it tells (--state-file)."""
        self.save_state()
        self.send_to_client(client_id, fields)

    def save_state(self) -> None:
        if self.state is not None:
            self.state.save(self.orders)

    def positions(self) -> list[Position]:
        return [p for p in self.orders.positions.values() if p.quantity]

    def _position_changed(self, pos: Position) -> None:
        self.save_state()
        self.feeds.changed(pos)  # position, portfolio, account values and PnL pushes

    def account(self) -> dict[str, Any]:
        """The ledger now: cash, net_liquidation, realized_pnl_today, daily_pnl, ..., and
        every position ever held (ledger.AccountFigures.as_dict)."""
        return self.orders.ledger.figures(self.now()).as_dict()

    def _load_positions(self) -> None:
        book = self.market.book
        for spec in self.scenario.account.positions:
            inst: Instrument | None = book.stocks.get(spec.symbol)
            if spec.sec_type == "OPT" and spec.symbol in book.chains:
                day = date(int(spec.expiry[:4]), int(spec.expiry[4:6]), int(spec.expiry[6:]))
                inst = book.option(spec.symbol, day, spec.strike, spec.right, -1)
            if inst is None:
                log.warning("position in %s skipped: no such instrument", spec.symbol)
                continue
            self.orders.positions[inst.con_id] = Position(inst, spec.quantity, spec.avg_cost)

    # ---- stats --------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        snap = self.counters.snapshot()
        snap["port"] = self.port
        snap["clients_connected"] = sorted(self.clients)
        snap["account"] = self.account()
        snap["peak_long_options"] = dict(self.orders.ledger.peak_long_options)
        refs: dict[str, int] = {}
        for order in self.orders.received:
            if not order["whatIf"]:
                refs[order["orderRef"]] = refs.get(order["orderRef"], 0) + 1
        snap["orders_by_ref"] = refs
        return snap

    def log_order(self, entry: dict[str, Any]) -> None:
        """``--order-log``: one JSON line per order message received (what-ifs aside),
        appended as it arrives: a record of what reached the gateway that a SIGKILL of it
        does not take (chaos counts the brackets each orderRef got from it)."""
        if self.order_log is None or entry["whatIf"]:
            return
        keys = (
            "order_id",
            "client_id",
            "parentId",
            "orderRef",
            "action",
            "sec_type",
            "symbol",
            "totalQuantity",
            "transmit",
        )
        line = {"pid": os.getpid(), **{k: entry[k] for k in keys}}
        try:
            with self.order_log.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
        except OSError as exc:
            log.error("cannot write the order log %s: %s", self.order_log, exc)

    def received_orders(self) -> list[dict[str, Any]]:
        return [dict(o) for o in self.orders.received]

    def write_stats(self) -> None:
        if self.stats_file is None:
            return
        try:
            write_stats_file(self.stats_file, self.stats())
        except OSError as exc:
            log.error("cannot write stats file %s: %s", self.stats_file, exc)


async def start_server(
    scenario: Scenario,
    port: int = 0,
    stats_file: str | Path | None = None,
    order_log: str | Path | None = None,
    state_file: str | Path | None = None,
) -> SimServer:
    """Create and start a simulator on 127.0.0.1 (port 0 = a free port, see ``.port``)."""
    server = SimServer(scenario, stats_file, order_log, state_file)
    await server.start(port)
    return server
