"""The simulator as IBKR's own client reads it: the official ``ibapi`` EClient / EWrapper.

ib_insync and ib_async share an ancestry (ib_async is ib_insync's fork) and decode alike; a
message both accept may still not be what TWS sends. ``ibapi`` is IBKR's Python client from
the TWS API release (installed from ``ibapi-stable``, which repackages it unchanged: see the
``test`` extra in setup.cfg). It negotiates the sim's server version (176, below the protobuf
versions from 201) and decodes the text protocol field by field, so these tests check the
messages against IBKR's own decoder:

- account values (updateAccountValue, accountSummary) with two decimals;
- contract details: SPY / QQQ stockType ETF, AAPL COMMON; an option's tradingHours and
  liquidHours both the regular session;
- error 202 "Order Canceled - reason:" after a cancelled order's orderStatus Cancelled, for a
  cancel sent while the order still waited out the order latency;
- orders a client sent just before it disconnected (a bracket; an order and its cancel) are
  visible on a new connection: reqAllOpenOrders, reqCompletedOrders.

The client runs as IBKR's samples run it: ``connect`` (handshake), then ``run()`` on a thread
of its own; the test waits for the callbacks it asserts on (bounded), never for time.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest_sim import make_scenario, next_client_id
from tests.sessions import TUESDAY_MORNING
from tools.gateway_sim import ThreadedSim

ibapi = pytest.importorskip("ibapi", reason="IBKR's client: pip install -e '.[test]'")
from ibapi.client import EClient  # noqa: E402
from ibapi.contract import Contract, ContractDetails  # noqa: E402
from ibapi.order import Order  # noqa: E402
from ibapi.order_cancel import OrderCancel  # noqa: E402
from ibapi.order_state import OrderState  # noqa: E402
from ibapi.wrapper import EWrapper  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
ACCOUNT = "DU1234567"
SEC_DEF_FARM_OK = 2158  # the last farm notice the default scenario sends at connect
TWO_DECIMALS = re.compile(r"^-?\d+\.\d\d$")
Event = tuple[Any, ...]


class OfficialClient(EWrapper, EClient):
    """IBKR's client and wrapper in one object, as the TWS API samples write it; every
    callback the tests need is recorded as a tuple ``(name, ...)``."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self.heard: list[Event] = []
        self.failure: BaseException | None = None
        self._changed = threading.Condition()
        self._runner: threading.Thread | None = None

    # ---- running ----------------------------------------------------------------------------
    def start(self, port: int, client_id: int) -> int:
        """Connect, run the message loop on a thread, return the first nextValidId once the
        connect's last message (the sec-def farm notice) is read: a socket closed with
        unread data is reset, and the kernel then drops what the client had not sent yet
        (ibapi sends without TCP_NODELAY), orders that no gateway would ever see."""
        self.connect("127.0.0.1", port, client_id)
        assert self.isConnected(), "ibapi could not connect to the simulator"
        self._runner = threading.Thread(target=self._run, name="ibapi-run", daemon=True)
        self._runner.start()
        self.wait(lambda e: e[:3] == ("error", -1, SEC_DEF_FARM_OK))
        return int(self.wait(lambda e: e[0] == "nextValidId")[1])

    def _run(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # a message the decoder choked on: the test fails on it
            with self._changed:
                self.failure = exc
                self._changed.notify_all()

    def stop(self) -> None:
        self.disconnect()
        if self._runner is not None:
            self._runner.join(5.0)

    def wait(self, match: Callable[[Event], bool], timeout_s: float = 10.0) -> Event:
        """The first recorded callback ``match`` accepts, waiting for it at most timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for event in self.heard:
                    if match(event):
                        return event
                if self.failure is not None:
                    raise AssertionError("ibapi's message loop failed") from self.failure
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no such callback in {timeout_s} s; the last ones: {self.heard[-8:]}"
                    )
                self._changed.wait(left)

    def of(self, name: str) -> list[Event]:
        with self._changed:
            return [e for e in self.heard if e[0] == name]

    def _hear(self, *event: Any) -> None:
        with self._changed:
            self.heard.append(event)
            self._changed.notify_all()

    # ---- EWrapper callbacks ----------------------------------------------------------------
    def nextValidId(self, orderId: int) -> None:
        self._hear("nextValidId", orderId)

    def error(
        self,
        reqId: int,
        errorTime: int,
        errorCode: int,
        errorString: str,
        advancedOrderRejectJson: str = "",
    ) -> None:
        self._hear("error", reqId, errorCode, errorString)

    def updateAccountValue(self, key: str, val: str, currency: str, accountName: str) -> None:
        self._hear("updateAccountValue", key, val, currency, accountName)

    def accountDownloadEnd(self, accountName: str) -> None:
        self._hear("accountDownloadEnd", accountName)

    def accountSummary(self, reqId: int, account: str, tag: str, value: str, currency: str) -> None:
        self._hear("accountSummary", reqId, tag, value, currency)

    def accountSummaryEnd(self, reqId: int) -> None:
        self._hear("accountSummaryEnd", reqId)

    def contractDetails(self, reqId: int, contractDetails: ContractDetails) -> None:
        self._hear("contractDetails", reqId, contractDetails)

    def contractDetailsEnd(self, reqId: int) -> None:
        self._hear("contractDetailsEnd", reqId)

    def orderStatus(self, orderId: int, status: str, *rest: Any) -> None:
        self._hear("orderStatus", orderId, status)

    def openOrder(
        self, orderId: int, contract: Contract, order: Order, orderState: OrderState
    ) -> None:
        self._hear(
            "openOrder", orderId, order.clientId, order.permId, orderState.status, order.parentId
        )

    def openOrderEnd(self) -> None:
        self._hear("openOrderEnd")

    def completedOrder(self, contract: Contract, order: Order, orderState: OrderState) -> None:
        self._hear("completedOrder", order.permId, orderState.status)

    def completedOrdersEnd(self) -> None:
        self._hear("completedOrdersEnd")


@contextmanager
def official_client(port: int, client_id: int | None = None) -> Iterator[OfficialClient]:
    app = OfficialClient()
    app.start(port, client_id or next_client_id())
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def decoder_errors() -> Iterator[list[logging.LogRecord]]:
    """What ibapi logged at ERROR (a field count it did not expect drops the message with
    only such a log line): must stay empty."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.ERROR)
    logger = logging.getLogger("ibapi")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def spy_call() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right = "20261211", 680.0, "C"
    return c


def limit(
    action: str, qty: float, price: float, *, parent_id: int = 0, transmit: bool = True
) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice = action, qty, "LMT", price
    o.parentId, o.transmit, o.tif = parent_id, transmit, "DAY"
    return o


def _book(sim: ThreadedSim) -> dict[int, tuple[int, str, int]]:
    return sim.call(
        lambda: {
            o.order_id: (o.client_id, o.status, o.perm_id)
            for o in sim.server.orders.orders.values()
        }
    )


def _details_end(req_id: int) -> Callable[[Event], bool]:
    return lambda e: e[:2] == ("contractDetailsEnd", req_id)


def _until(done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done in {timeout_s} s")
        time.sleep(0.02)


# ---- the tests ----------------------------------------------------------------------------------
def test_ibapi_decodes_account_values_with_two_decimals(
    decoder_errors: list[logging.LogRecord],
) -> None:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim, official_client(sim.port) as app:
        app.reqAccountUpdates(True, ACCOUNT)
        app.wait(lambda e: e[0] == "accountDownloadEnd")
        app.reqAccountSummary(9001, "All", "NetLiquidation,TotalCashValue,AvailableFunds")
        app.wait(lambda e: e[:2] == ("accountSummaryEnd", 9001))
        values = {
            e[1]: e[2] for e in app.of("updateAccountValue") if e[3] == "USD" and e[1] != "Currency"
        }
        summary = {e[2]: e[3] for e in app.of("accountSummary") if e[1] == 9001}
    assert values["NetLiquidation"] == "100000.00" and values["AvailableFunds"] == "95000.00"
    assert all(TWO_DECIMALS.match(v) for v in values.values()), values
    assert summary == {
        "NetLiquidation": "100000.00",
        "TotalCashValue": "100000.00",
        "AvailableFunds": "95000.00",
    }
    assert not decoder_errors


def test_ibapi_decodes_etfs_and_an_options_regular_session(
    decoder_errors: list[logging.LogRecord],
) -> None:
    asked = {1: stock("SPY"), 2: stock("QQQ"), 3: stock("AAPL"), 4: spy_call()}
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim, official_client(sim.port) as app:
        for req_id, contract in asked.items():
            app.reqContractDetails(req_id, contract)
        for req_id in asked:
            app.wait(_details_end(req_id))
        details: dict[int, ContractDetails] = {e[1]: e[2] for e in app.of("contractDetails")}
    spy, qqq, aapl, call = (details[i] for i in (1, 2, 3, 4))
    assert (spy.stockType, qqq.stockType, aapl.stockType) == ("ETF", "ETF", "COMMON")
    assert spy.contract.conId == 756733 and call.contract.secType == "OPT"
    assert "20261201:0400-20261201:2000" in spy.tradingHours
    assert "20261201:0930-20261201:1600" in spy.liquidHours
    assert call.tradingHours == call.liquidHours == spy.liquidHours
    assert call.timeZoneId == "US/Eastern" and call.underConId == 756733
    assert not decoder_errors


def test_ibapi_reads_202_after_the_cancelled_status(
    decoder_errors: list[logging.LogRecord],
) -> None:
    # Given an order latency of 200 ms: the cancel reaches the sim while its order waits
    scenario = make_scenario(
        TUESDAY_MORNING, latency={"order_s": 0.2}, orders={"fill_mode": "never"}
    )
    with ThreadedSim(scenario) as sim, official_client(sim.port) as app:
        order_id = int(app.wait(lambda e: e[0] == "nextValidId")[1])
        app.placeOrder(order_id, stock("SPY"), limit("BUY", 1, 1.00))
        app.cancelOrder(order_id, OrderCancel())
        app.wait(lambda e: e[:3] == ("error", order_id, 202))
        about = [e for e in app.heard if e[0] in ("orderStatus", "error") and e[1] == order_id]
    # Then: acknowledged, cancelled, then 202 "Order Canceled - reason:"; never 10147
    assert ("orderStatus", order_id, "Cancelled") in about
    cancelled = about.index(("orderStatus", order_id, "Cancelled"))
    (error_202,) = [e for e in about if e[0] == "error"]
    assert about.index(error_202) > cancelled
    assert error_202[3].startswith("Order Canceled - reason:")
    assert not decoder_errors


def test_ibapi_sees_orders_sent_just_before_a_disconnect_on_a_new_connection(
    decoder_errors: list[logging.LogRecord],
) -> None:
    # Given a 50 ms order latency and client A sending a bracket (parent and take-profit
    # held, the stop transmitting all three), then an order and its cancel, and leaving
    scenario = make_scenario(
        TUESDAY_MORNING, latency={"order_s": 0.05}, orders={"fill_mode": "never"}
    )
    owner = next_client_id()
    with ThreadedSim(scenario) as sim:
        with official_client(sim.port, owner) as a:
            first = int(a.wait(lambda e: e[0] == "nextValidId")[1])
            parent, take_profit, stop, single = first, first + 1, first + 2, first + 3
            spy = stock("SPY")
            a.placeOrder(parent, spy, limit("BUY", 1, 1.00, transmit=False))
            a.placeOrder(take_profit, spy, limit("SELL", 1, 2.00, parent_id=parent, transmit=False))
            a.placeOrder(stop, spy, limit("SELL", 1, 0.50, parent_id=parent))
            a.placeOrder(single, spy, limit("BUY", 1, 1.00))
            a.cancelOrder(single, OrderCancel())
        # When the sim has worked through A's queue with A gone
        _until(lambda: _book(sim).get(single, (0, ""))[1] == "Cancelled")
        book = _book(sim)
        # Then client B sees A's working orders and the cancelled one
        with official_client(sim.port) as b:
            b.reqAllOpenOrders()
            b.wait(lambda e: e[0] == "openOrderEnd")
            b.reqCompletedOrders(False)
            b.wait(lambda e: e[0] == "completedOrdersEnd")
            working = {e[1]: e[2:] for e in b.of("openOrder")}
            completed = {e[1]: e[2] for e in b.of("completedOrder")}
    assert working == {
        parent: (owner, book[parent][2], "Submitted", 0),
        take_profit: (owner, book[take_profit][2], "PreSubmitted", parent),
        stop: (owner, book[stop][2], "PreSubmitted", parent),
    }
    assert completed == {book[single][2]: "Cancelled"}
    assert not decoder_errors
