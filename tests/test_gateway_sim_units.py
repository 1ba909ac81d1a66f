"""Units of the gateway simulator, no sockets: scenario validation, price paths, hours,
framing, and the order codec checked against ib_insync's own encoder and decoder.
"""

from __future__ import annotations

import asyncio
import math
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from tests.conftest_sim import DEFAULT_SCENARIO, make_scenario
from tests.ibclient import Client, Decoder, LimitOrder, Option, Stock, StopOrder
from tests.sessions import TUESDAY_MORNING
from tools.gateway_sim import ScenarioError, load_scenario, scenario_from_dict
from tools.gateway_sim import outgoing as out
from tools.gateway_sim.arrivals import SPREAD_MAX_S, FrameCutter, Spreader
from tools.gateway_sim.codec import (
    FieldReader,
    FieldValue,
    decode_body,
    encode_message,
    format_field,
)
from tools.gateway_sim.hours import SessionClock
from tools.gateway_sim.market import Market
from tools.gateway_sim.order_codec import decode_place_order, encode_open_order
from tools.gateway_sim.scenario import SessionSpec

pytestmark = pytest.mark.timeout(60)


# ---- scenario ---------------------------------------------------------------------------------
def test_default_scenario_has_a_30_symbol_universe() -> None:
    scenario = load_scenario(DEFAULT_SCENARIO)
    names = [s.symbol for s in scenario.all_symbols()]
    assert names[:3] == ["SPY", "QQQ", "AAPL"] and "SYM01" in names and "SYM30" in names
    assert len(names) == 33 and scenario.account.id.startswith("DU")


@pytest.mark.parametrize(
    "path", sorted(DEFAULT_SCENARIO.parent.glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_scenario_validates(path: Any) -> None:
    scenario = load_scenario(path)
    market = Market(scenario, SessionClock(scenario.session))
    assert market.book.stocks and scenario.account.id.startswith("DU")


def test_unknown_key_is_named() -> None:
    with pytest.raises(ScenarioError, match=r"symbols\.0\.prise: Extra inputs"):
        scenario_from_dict({"symbols": [{"symbol": "SPY", "price": 1, "prise": 2}]})
    with pytest.raises(ScenarioError, match=r"rules\.max_lines"):
        scenario_from_dict({"rules": {"max_lines": 5}})


def test_cross_references_are_checked() -> None:
    with pytest.raises(ScenarioError, match=r"quirks\.0\.symbol: unknown symbol 'NOPE'"):
        scenario_from_dict({"quirks": [{"symbol": "NOPE", "kind": "zero"}]})
    with pytest.raises(ScenarioError, match="not both"):
        scenario_from_dict(
            {"faults": [{"kind": "disconnect", "at_s": 1, "after_mktdata_requests": 2}]}
        )
    with pytest.raises(ScenarioError, match="needs a code"):
        scenario_from_dict({"faults": [{"kind": "error"}]})


def test_bad_file_is_a_scenario_error(tmp_path: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("symbols: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


# ---- market -----------------------------------------------------------------------------------
def _market(**overrides: Any) -> Market:
    scenario = make_scenario(TUESDAY_MORNING, **overrides)
    return Market(scenario, SessionClock(scenario.session))


def _ema(values: list[float], n: int) -> list[float]:
    k, e, out_ = 2 / (n + 1), values[0], []
    for v in values:
        e = v * k + e * (1 - k)
        out_.append(e)
    return out_


def test_bars_are_deterministic_and_seeded() -> None:
    end = 1_790_000_000.0
    a, b, c = _market(), _market(), _market(seed=99)
    spy = a.book.stocks["SPY"]
    bars_a = a.bars(spy, end, 7200, 60, False, end)
    assert bars_a == b.bars(b.book.stocks["SPY"], end, 7200, 60, False, end)
    assert bars_a != c.bars(c.book.stocks["SPY"], end, 7200, 60, False, end)
    far = a.paths["SPY"].minute_bar(10**9 // 60)  # any minute, O(1)
    assert far.low <= far.open <= far.high


def test_trends_alternate_up_down_and_flat() -> None:
    market = _market(session={"mode": "always_open"})  # every minute of the path
    end = 1_790_000_000.0
    for symbol in ("SPY", "QQQ", "SYM03"):
        bars = market.bars(market.book.stocks[symbol], end, 2 * 86_400, 60, False, end)
        closes = [bar.close for bar in bars]
        signs = [f > s for f, s in zip(_ema(closes, 8), _ema(closes, 21), strict=True)]
        crossings = sum(1 for x, y in zip(signs, signs[1:], strict=False) if x != y) / 2
        hourly = [closes[i + 60] / closes[i] - 1 for i in range(0, len(closes) - 60, 60)]
        assert 5 <= crossings <= 150, symbol
        assert max(hourly) > 0.002 and min(hourly) < -0.002, symbol
        assert any(abs(r) < 0.001 for r in hourly), symbol


def test_option_quotes_follow_the_model() -> None:
    market = _market()
    now = market.now()
    chain = market.book.chains["SPY"]
    expiry = chain.expiries(market.today())[1]
    call = market.book.option("SPY", expiry, 680.0, "C", 1)
    put = market.book.option("SPY", expiry, 680.0, "P", 1)
    qc, qp = market.quote(call, now), market.quote(put, now)
    assert qc.greeks is not None and qp.greeks is not None
    assert qc.bid is not None and qc.ask is not None
    assert 0 < qc.greeks.delta < 1 and -1 < qp.greeks.delta < 0
    assert 0 <= qc.bid < qc.ask and qc.greeks.price == pytest.approx((qc.bid + qc.ask) / 2, 0.2)


def test_strike_grid_and_sparse_expiries() -> None:
    chain = _market().book.chains["SPY"]
    assert 350 <= len(chain.grid) <= 450
    # the dailies and the first weeklies keep every strike; later expiries thin out
    assert chain.cfg.sparse_from_expiry == 6
    assert len(chain.strikes_for(6)) < len(chain.strikes_for(5)) == len(chain.grid)
    assert chain.has_strike(5, 681.0) and not chain.has_strike(6, 681.0)


# ---- hours ------------------------------------------------------------------------------------
def test_always_open_covers_now_and_lists_holidays() -> None:
    now = TUESDAY_MORNING.timestamp()
    today = TUESDAY_MORNING.date()
    later = (today + timedelta(days=2)).strftime("%Y%m%d")
    clock = SessionClock(SessionSpec(holidays=[today.strftime("%Y%m%d"), later]))
    text = clock.hours_string(now, rth=False)
    assert f"{later}:CLOSED" in text and f"{today:%Y%m%d}:CLOSED" not in text
    assert f"{today + timedelta(days=3):%Y%m%d}:CLOSED" in text  # the synthetic holiday
    assert clock.is_open(now, rth=True)
    assert text.count(":CLOSED") == 2 and text.count(";") == 7 and text.count("-") == 6


def test_real_hours_close_weekends_and_nights() -> None:
    clock = SessionClock(SessionSpec(mode="real", holidays=["20261126"]))
    zone = clock.zone
    wednesday = datetime(2026, 11, 25, 10, 0, tzinfo=zone).timestamp()
    assert clock.is_open(wednesday, rth=True)
    assert not clock.is_open(wednesday - 7 * 3600, rth=False)  # 03:00
    assert not clock.is_open(datetime(2026, 11, 26, 10, 0, tzinfo=zone).timestamp(), rth=True)
    text = clock.hours_string(wednesday, rth=True)
    assert "20261125:0930-20261125:1600" in text and "20261126:CLOSED" in text
    assert "20261128:CLOSED" in text  # Saturday
    assert date(2026, 11, 28).weekday() == 5


# ---- framing ----------------------------------------------------------------------------------
def test_framing_round_trip() -> None:
    message = encode_message([1, 6, 42, 1, 680.25, 10.0, True, None, ""])
    assert int.from_bytes(message[:4], "big") == len(message) - 4
    assert decode_body(message[4:]) == ["1", "6", "42", "1", "680.25", "10.0", "1", "", ""]
    assert format_field(1.7976931348623157e308) == "1.7976931348623157E308"
    assert format_field(False) == "0" and format_field(5.0) == "5.0"


def test_frames_are_cut_one_at_a_time_handshake_first() -> None:
    cutter = FrameCutter()
    version = b"v157..176 +PACEAPI"  # what ib_insync sends, no NUL
    hello = b"API\0" + len(version).to_bytes(4, "big") + version
    stream = hello + encode_message([49, 1]) + encode_message([61, 1])
    frames, pos = [], 0
    while pos < len(stream):  # read as the reader does: never past the frame under way
        take = cutter.missing()
        frames += cutter.feed(stream[pos : pos + take])
        pos += take
    assert frames == [hello, encode_message([49, 1]), encode_message([61, 1])]
    assert FrameCutter().feed(b"GET / HTTP/1.1") == [b"GET / HTTP/1.1"]  # not ours: passed on


def test_frames_sharing_a_kernel_stamp_are_spread_since_the_stamp_before() -> None:
    spread = Spreader()
    # a frame read alone keeps its stamp
    assert spread.add(b"a", 10.0) == [] and spread.flush() == [(b"a", 10.0)]
    # five sent 20 ms apart while the reader stalled: the kernel merged them under the
    # newest one's stamp; they arrived after 10.0 and by 10.1, evenly as far as is known
    for frame in (b"b", b"c", b"d", b"e"):
        assert spread.add(frame, 10.1) == []
    out = spread.add(b"f", 10.1) + spread.add(b"g", 10.12)  # a new stamp ends the group
    assert [f for f, _t in out] == [b"b", b"c", b"d", b"e", b"f"]
    assert [round(t, 3) for _f, t in out] == [10.02, 10.04, 10.06, 10.08, 10.1]
    # a burst after a long quiet spell is spread over at most SPREAD_MAX_S: it stays a burst
    # for the gateway's 0.95 s window
    spread.flush()
    burst = [item for i in range(17) for item in spread.add(b"x", 30.0)] + spread.flush()
    assert len(burst) == 17 and min(t for _f, t in burst) >= 30.0 - SPREAD_MAX_S
    # and times never go back, whatever the stamps say
    late = spread.add(b"y", 29.0) + spread.flush()
    assert late == [(b"y", 30.0)]


def test_the_first_frames_merged_under_one_stamp_are_spread_not_bunched() -> None:
    # Given a reader that started late: the handshake and 16 messages sent 20 ms apart were
    # merged by the kernel under the newest one's stamp (measured: 17 sends, one stamp)
    spread = Spreader()
    first = [item for _ in range(17) for item in spread.add(b"m", 20.34)] + spread.flush()
    # Then they are spread over SPREAD_MAX_S ending at the stamp, not put at one instant
    times = [t for _f, t in first]
    assert times[-1] == 20.34 and times[0] > 20.34 - SPREAD_MAX_S
    assert len(set(times)) == 17 and times == sorted(times)


def test_field_reader_contract() -> None:
    fields = [
        "9",
        "8",
        "7",
        "0",
        "spy",
        "OPT",
        "20261127",
        "680.0",
        "CALL",
        "100",
        "SMART",
        "",
        "USD",
        "",
        "",
    ]
    r = FieldReader(fields, start=2)
    assert r.integer() == 7
    c = r.contract()
    assert (c.symbol, c.sec_type, c.strike, c.right, c.multiplier) == (
        "SPY",
        "OPT",
        680.0,
        "C",
        "100",
    )
    assert r.text() == "" and r.remaining() == 0


# ---- the order codec against ib_insync's own encoder / decoder ----------------------------------
def _client_fields(send: Any) -> list[str]:
    """The fields ib_insync's Client would write for a request (no socket)."""
    client = Client(wrapper=None)
    client.connState = Client.CONNECTED
    client._serverVersion = 176
    captured: list[str] = []
    client.sendMsg = captured.append
    send(client)
    return captured[0].split("\0")[:-1]


def test_place_order_decodes_every_field_that_matters() -> None:
    contract = Option("SPY", "20261127", 680, "C", "SMART", conId=123)
    order = LimitOrder(
        "BUY",
        3,
        2.15,
        tif="DAY",
        ocaGroup="g1",
        orderRef="ref-1",
        parentId=77,
        transmit=False,
        account="DU1234567",
        whatIf=True,
    )
    fields = _client_fields(lambda c: c.placeOrder(55, contract, order))
    assert len(fields) == 115
    order_id, c, o = decode_place_order(FieldReader(fields), 176)
    assert order_id == 55 and c.con_id == 123 and c.strike == 680.0
    assert (o["action"], o["totalQuantity"], o["orderType"], o["lmtPrice"]) == (
        "BUY",
        "3",
        "LMT",
        "2.15",
    )
    assert (o["tif"], o["ocaGroup"], o["orderRef"], o["parentId"]) == ("DAY", "g1", "ref-1", "77")
    assert (o["transmit"], o["whatIf"], o["account"]) == ("0", "1", "DU1234567")
    assert o["auxPrice"] == "" and o["manualOrderTime"] == ""


def test_open_order_echo_parses_back_in_ib_insync() -> None:
    contract = Stock("SPY", "SMART", "USD", conId=756733)
    order = StopOrder("SELL", 5, 600.5, orderRef="stop", ocaGroup="oca", parentId=9)
    fields = _client_fields(lambda c: c.placeOrder(10, contract, order))
    _oid, _c, raw = decode_place_order(FieldReader(fields), 176)
    raw.update(clientId="3", permId="555")
    market = _market()
    head = out.contract_head(market.book.stocks["SPY"])
    state: dict[str, FieldValue] = {
        "initMarginChange": "100.00",
        "commission": 1.0,
        "commissionCurrency": "USD",
    }
    message = encode_open_order(10, head, raw, "Submitted", state, 176)
    seen: dict[str, Any] = {}

    class Wrapper:
        def openOrder(self, order_id: int, c: Any, o: Any, st: Any) -> None:  # noqa: N802
            seen.update(order_id=order_id, contract=c, order=o, state=st)

    decoder = Decoder(Wrapper(), 176)
    decoder.interpret(decode_body(encode_message(message)[4:]))
    o, st = seen["order"], seen["state"]
    assert seen["order_id"] == 10 and seen["contract"].conId == 756733
    assert (o.action, o.totalQuantity, o.orderType, o.auxPrice) == ("SELL", 5.0, "STP", 600.5)
    assert (o.orderRef, o.ocaGroup, o.parentId, o.clientId, o.permId) == ("stop", "oca", 9, 3, 555)
    assert st.status == "Submitted" and st.initMarginChange == "100.00" and st.commission == 1.0


def test_fixed_count_messages_parse_in_ib_insync() -> None:
    market = _market()
    spy = market.book.stocks["SPY"]
    calls: list[tuple[str, tuple[Any, ...]]] = []

    class Wrapper:
        def __getattr__(self, name: str) -> Any:
            return lambda *args: calls.append((name, args))

    decoder = Decoder(Wrapper(), 176)
    greeks = market.greeks(
        market.book.option("SPY", market.today() + timedelta(days=7), 680.0, "C", 1), market.now()
    )
    for message in (
        out.position("DU1", spy, 10.0, 650.0),
        out.portfolio("DU1", spy, 10.0, 680.0, 650.0),
        out.tick_price(1, out.BID, 680.0, 3.0, False),
        out.tick_option(1, out.MODEL_OPTION, greeks, False),
        out.tick_option(1, out.MODEL_OPTION, None, True),
        out.commission_report("e1", 1.0, "USD"),
        out.error(5, 200),
    ):
        decoder.interpret(decode_body(encode_message(message)[4:]))
    assert [name for name, _ in calls] == [
        "position",
        "updatePortfolio",
        "priceSizeTick",
        "tickOptionComputation",
        "tickOptionComputation",
        "commissionReport",
        "error",
    ]
    assert calls[3][1][4] == pytest.approx(greeks.delta, abs=1e-6)
    assert calls[4][1][1] == 83 and calls[4][1][4] == -2.0  # delayed, "not computed"
    assert math.isclose(calls[2][1][2], 680.0)


def test_threaded_sim_call_runs_on_the_sim_loop() -> None:
    from tools.gateway_sim import ThreadedSim

    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:
        loop = sim.call(asyncio.get_running_loop)
        assert loop is sim.loop and sim.port > 0


def test_a_news_event_moves_the_price_for_good_and_lifts_the_volume() -> None:
    at = TUESDAY_MORNING.timestamp()
    news = _market(
        quirks=[],
        symbols=[
            {
                "symbol": "SPY",
                "price": 680,
                "con_id": 756733,
                "volume_per_min": 150000,
                "events": [
                    {
                        "at": TUESDAY_MORNING.isoformat(),
                        "move_pct": 2.0,
                        "volume_x": 5,
                        "duration_min": 30,
                    }
                ],
            }
        ],
    )
    calm = _market(
        quirks=[],
        symbols=[{"symbol": "SPY", "price": 680, "con_id": 756733, "volume_per_min": 150000}],
    )
    before, after = at - 120, at + 600
    assert news.underlying("SPY", before) == calm.underlying("SPY", before)
    assert news.underlying("SPY", after) == pytest.approx(calm.underlying("SPY", after) * 1.02)
    minute = int(at // 60) + 1
    loud, quiet = news.paths["SPY"].minute_bar(minute), calm.paths["SPY"].minute_bar(minute)
    assert loud.volume > 3 * quiet.volume
    with pytest.raises(ScenarioError, match="events.0.at"):
        scenario_from_dict(
            {
                "symbols": [
                    {
                        "symbol": "SPY",
                        "price": 1,
                        "events": [{"at": "2026-12-07T10:05:00", "move_pct": 1}],
                    }
                ]
            }
        )
