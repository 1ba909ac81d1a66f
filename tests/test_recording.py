"""The flight recorder: what the RecordingBroker writes, the writer's crash safety, retention.

Everything here runs in-process over the StubBroker (or a fake venue for orders) on a pinned
clock; the one run through the real `run --sim` path is in test_recording_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import math
from array import array
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from common.messages import Bars, OptionContract, OrderIntent, Right, Signal
from supervisor.broker.base import ConnectionLost, Fill, OrderRejected, PlacedBracket
from supervisor.broker.stub import StubBroker
from supervisor.recording import format as fmt
from supervisor.recording.recorder import Recording, masked, open_recording
from supervisor.recording.recording_broker import RecordingBroker
from supervisor.recording.retention import complete_crashed, new_path, prune, recordings
from supervisor.recording.writer import RecordingWriter, in_progress
from tests.conftest import make_settings
from tests.sessions import TUESDAY_MORNING

pytestmark = pytest.mark.timeout(60)

NOW = TUESDAY_MORNING.timestamp()


class Clock:
    def __init__(self, ts: float = NOW) -> None:
        self.ts = ts

    def now(self) -> float:
        return self.ts


def stub(tmp_path: Path) -> tuple[RecordingBroker, RecordingWriter, Clock, StubBroker]:
    clock = Clock()
    inner = StubBroker(make_settings(tmp_path).stub, clock.now)
    writer = RecordingWriter(tmp_path / "rec")
    return RecordingBroker(inner, writer, clock.now), writer, clock, inner


def rows(root: Path, kind: str) -> list[dict[str, Any]]:
    return fmt.read_kind(root, kind).to_pylist()


def test_every_market_answer_is_recorded_as_given_with_the_session_clock(tmp_path):
    broker, writer, clock, _ = stub(tmp_path)

    async def session() -> tuple[Any, ...]:
        quote = await broker.quote("SPY")
        clock.ts += 60
        bars = await broker.bars("SPY", 30, 1, True)
        chain = await broker.chain("SPY")
        contract = OptionContract("SPY", chain.expirations[1], chain.strikes[200], Right.CALL)
        quotes = await broker.option_quotes([contract])
        close = await broker.closing_price("SPY", date(2026, 11, 30))
        await broker.account()
        await broker.unknown_symbols(["SPY", "QQQ"])
        return quote, bars, chain, quotes, close

    quote, bars, chain, quotes, close = asyncio.run(session())
    writer.close()
    root = writer.root
    (q,) = rows(root, fmt.QUOTES)
    assert (q["ts"], q["symbol"], q["bid"], q["ask"], q["error"]) == (
        NOW,
        "SPY",
        quote.bid,
        quote.ask,
        None,
    )
    (b,) = rows(root, fmt.BARS)
    assert b["ts"] == NOW + 60 and (b["minutes"], b["bar_minutes"], b["rth"]) == (30, 1, True)
    assert b["bar_ts"] == bars.ts.tolist() and b["close"] == bars.close.tolist() and len(bars)
    (c,) = rows(root, fmt.CHAINS)
    assert tuple(c["expirations"]) == chain.expirations and tuple(c["strikes"]) == chain.strikes
    (o,) = rows(root, fmt.OPTION_QUOTES)
    assert (o["expiry"], o["strike"], o["right"], o["answered"]) == (
        quotes[0].contract.expiry,
        quotes[0].contract.strike,
        "C",
        True,
    )
    assert (o["bid"], o["ask"], o["delta"]) == (quotes[0].bid, quotes[0].ask, quotes[0].delta)
    (h,) = rows(root, fmt.HOURS)
    assert (h["kind"], h["day"], h["close"]) == (fmt.HOURS_CLOSE, "2026-11-30", close)
    assert close is not None
    (a,) = rows(root, fmt.ACCOUNT)
    assert a["account"] and a["net_liquidation"] == 100_000.0 and a["currency"] == "USD"
    (k,) = rows(root, fmt.CONTRACTS)
    assert (k["symbols"], k["unknown"], k["reasons"]) == (["SPY", "QQQ"], [], [])
    # every kind has its file, the empty ones too; no parts left
    assert sorted(p.name for p in root.glob("*.parquet")) == sorted(
        fmt.file_name(k) for k in fmt.SCHEMAS
    )
    assert not (root / fmt.PARTS_DIR).exists()


class Failing(StubBroker):
    async def quote(self, symbol: str) -> Any:
        raise ConnectionLost("gateway gone")

    async def bars(self, symbol: str, minutes: int, bar_minutes: int = 1, rth: bool = False) -> Any:
        await asyncio.sleep(10)  # the caller gives up first


def test_a_failure_is_recorded_with_its_kind_and_raised_unchanged(tmp_path):
    clock = Clock()
    writer = RecordingWriter(tmp_path / "rec")
    broker = RecordingBroker(Failing(make_settings(tmp_path).stub, clock.now), writer, clock.now)

    async def session() -> None:
        with pytest.raises(ConnectionLost, match="gateway gone"):
            await broker.quote("SPY")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(broker.bars("QQQ", 30), 0.01)
        contracts = [OptionContract("SPY", "20261204", 0.0, Right.PUT)]  # the stub refuses
        with pytest.raises(Exception, match="no security definition"):
            await broker.option_quotes(contracts)

    asyncio.run(session())
    writer.close()
    (q,) = rows(writer.root, fmt.QUOTES)
    assert q["error"] == "ConnectionLost: gateway gone" and math.isnan(q["bid"] or math.nan)
    assert fmt.error_parts(q["error"]) == ("ConnectionLost", "gateway gone")
    (b,) = rows(writer.root, fmt.BARS)
    assert b["symbol"] == "QQQ" and b["error"].startswith("CancelledError")
    (o,) = rows(writer.root, fmt.OPTION_QUOTES)
    assert o["answered"] is False and o["error"].startswith("SymbolDataError:")


class Venue(StubBroker):
    """A venue that accepts one bracket, refuses the next, and reports fills."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.brackets = 0
        self.executions: list[Fill] = []

    async def place_bracket(self, intent: OrderIntent, quantity: int, account: str) -> Any:
        self.brackets += 1
        if self.brackets > 1:
            raise OrderRejected("201: margin", 201, (14, 15, 16))
        return PlacedBracket((11, 12, 13), (911, 912, 913))

    def fills(self) -> list[Fill]:
        return list(self.executions)


def intent() -> OrderIntent:
    contract = OptionContract("SPY", "20261204", 600.0, Right.CALL)
    return OrderIntent("i-1", 1, "SPY", contract, Signal.BUY, 2.5, 3.0, 2.0, 2.45, 0.7, ("r",))


def test_orders_refusals_and_each_new_fill_are_recorded(tmp_path):
    clock = Clock()
    writer = RecordingWriter(tmp_path / "rec")
    venue = Venue(make_settings(tmp_path).stub, clock.now)
    broker = RecordingBroker(venue, writer, clock.now)

    async def session() -> None:
        await broker.place_bracket(intent(), 2, "DU1")
        with pytest.raises(OrderRejected):
            await broker.place_bracket(intent(), 2, "DU1")

    asyncio.run(session())
    fill = Fill("e1", 11, "i-1", "BOT", 2, 2.5, NOW + 5)
    venue.executions.append(fill)
    broker.fills()
    broker.fills()  # the same execution again: not a new row
    venue.executions[0] = Fill("e1", 11, "i-1", "BOT", 2, 2.5, NOW + 5, commission=1.3)
    broker.fills()  # its commission arrived: recorded once more
    writer.close()
    placed, refused, first, costed = rows(writer.root, fmt.ORDERS)
    assert (placed["event"], placed["order_ids"], placed["perm_ids"]) == (
        fmt.EV_BRACKET,
        [11, 12, 13],
        [911, 912, 913],
    )
    assert json.loads(placed["detail"])["intent_id"] == "i-1" and placed["limit"] == 2.5
    assert (refused["error_code"], refused["order_ids"]) == (201, [14, 15, 16])
    assert refused["error"] == "OrderRejected: 201: margin"
    assert json.loads(refused["detail"])["rejected_after_fill"] is False
    assert (first["event"], first["exec_id"], first["price"]) == (fmt.EV_FILL, "e1", 2.5)
    assert math.isnan(first["commission"]) and costed["commission"] == 1.3


def test_a_crash_loses_only_the_unflushed_buffer_and_the_next_start_completes_it(tmp_path):
    root = tmp_path / "recordings"
    path = new_path(root, "sim", NOW)
    writer = RecordingWriter(path)
    writer.write_meta({"format_version": fmt.FORMAT_VERSION, "ended": None})
    writer.add(fmt.CYCLES, {"ts": NOW, "cycle": 1, "day": "2026-12-01", "wall_ts": 1.0})
    writer.flush()  # cycle 1's end
    writer.add(fmt.CYCLES, {"ts": NOW + 60, "cycle": 2, "day": "2026-12-01", "wall_ts": 2.0})
    # the run dies here: no close; while its process lives, its recording is in progress
    assert in_progress(path)
    assert complete_crashed(root) == []
    assert [r["cycle"] for r in rows(path, fmt.CYCLES)] == [1]  # read from the parts
    writer._lock.close()  # the process is gone: so is its lock
    assert not in_progress(path)
    assert complete_crashed(root) == [path]
    assert not (path / fmt.PARTS_DIR).exists()
    assert pq.read_table(path / fmt.file_name(fmt.CYCLES)).column("cycle").to_pylist() == [1]


def test_retention_deletes_only_old_recordings(tmp_path):
    root = tmp_path / "recordings"
    day = 86_400.0
    now = datetime(2026, 12, 7, 12, tzinfo=UTC).timestamp()
    old, recent = new_path(root, "ibkr", now - 31 * day), new_path(root, "sim", now - 29 * day)
    for path in (old, recent):
        path.mkdir(parents=True)
        (path / fmt.META_FILE).write_text("{}")
    stranger = root / "ibkr-notes"  # not a recording's name: never touched
    stranger.mkdir()
    assert old.name == "ibkr-20261106T120000Z"
    assert prune(root, 0, now) == []  # 0 keeps everything
    assert prune(root, 30, now) == [old]
    assert recordings(root) == [recent] and stranger.exists()
    second = new_path(root, "sim", now - 29 * day)  # the same second: a suffix
    assert second.name == recent.name + "-2"


def test_secrets_are_null_in_the_recorded_settings():
    assert masked({"a": SecretStr("x"), "b": [SecretStr("y"), 1], "c": "z"}) == {
        "a": None,
        "b": [None, 1],
        "c": "z",
    }


def test_only_sim_and_ibkr_runs_record_and_only_when_enabled(tmp_path):
    settings = make_settings(tmp_path, recording={"dir": str(tmp_path / "r")})
    stub_broker = StubBroker(settings.stub, Clock().now)
    assert open_recording(settings, "stub", stub_broker, Clock().now) is None
    off = make_settings(tmp_path, recording={"dir": str(tmp_path / "r"), "enabled": False})
    assert open_recording(off, "sim", stub_broker, Clock().now) is None
    secret = make_settings(
        tmp_path,
        recording={"dir": str(tmp_path / "r")},
        alerts={"slack_webhook": "https://hooks.example/secret"},
    )
    recording = open_recording(secret, "sim", stub_broker, Clock().now)
    assert isinstance(recording, Recording) and recording.path.parent == tmp_path / "r"
    recording.cycle_started(1, "2026-12-01", NOW)
    recording.close()
    meta = json.loads((recording.path / fmt.META_FILE).read_text())
    assert meta["market"] == "sim" and meta["format_version"] == fmt.FORMAT_VERSION
    assert meta["started"] == NOW and meta["ended"] == NOW and meta["rows"]["cycles"] == 1
    assert meta["settings"]["alerts"]["slack_webhook"] is None
    assert "secret" not in (recording.path / fmt.META_FILE).read_text()
    idle = open_recording(secret, "ibkr", stub_broker, Clock().now)
    assert idle is not None and idle.path.exists()
    idle.close()  # no cycle ran (no gateway, say): nothing left behind
    assert not idle.path.exists() and recordings(tmp_path / "r") == [recording.path]


def test_a_recording_that_cannot_be_written_stops_without_failing_the_broker(tmp_path):
    broker, writer, _, _ = stub(tmp_path)
    (writer.root / fmt.PARTS_DIR).write_text("in the way")  # its parts cannot be written
    asyncio.run(broker.quote("SPY"))
    writer.flush()
    assert writer.failure is not None and writer.closed
    quote = asyncio.run(broker.quote("SPY"))  # still answers, records nothing more
    assert quote.symbol == "SPY" and writer.rows[fmt.QUOTES] == 1


def bars_of(symbol: str, rows: list[tuple[float, float]]) -> Bars:
    """Bars whose open/high/low/close are the row's price, volume 10."""
    prices = [p for _, p in rows]
    return Bars(
        symbol,
        array("d", [t for t, _ in rows]),
        array("d", prices),
        array("d", prices),
        array("d", prices),
        array("d", prices),
        array("d", [10.0] * len(rows)),
    )


class Scripted(StubBroker):
    """Bars answers as scripted, one a call."""

    def __init__(self, *args: Any, answers: list[Bars], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers = answers

    async def bars(self, symbol: str, minutes: int, bar_minutes: int = 1, rth: bool = False) -> Any:
        return self.answers.pop(0)


def test_bars_are_stored_once_each_and_every_answer_reads_back_whole(tmp_path):
    m = 60.0
    answers = [
        bars_of("SPY", [(0, 1.0), (m, 2.0), (2 * m, 3.0)]),
        bars_of("SPY", [(m, 2.0), (2 * m, 3.5), (3 * m, 4.0)]),  # last bar revised, one new
        bars_of("SPY", [(0, 1.0), (m, 2.0), (2 * m, 3.5), (3 * m, 4.0)]),  # longer: all known
        bars_of("SPY", []),
        bars_of("SPY", [(0, 1.0), (2 * m, 3.5), (3 * m, 4.0)]),  # a known bar left out
        bars_of("SPY", [(2 * m, 3.5), (3 * m, 4.0), (4 * m, 5.0)]),
    ]
    clock = Clock()
    writer = RecordingWriter(tmp_path / "rec")
    inner = Scripted(make_settings(tmp_path).stub, clock.now, answers=list(answers))
    broker = RecordingBroker(inner, writer, clock.now)

    async def session() -> None:
        for _ in answers:
            await broker.bars("SPY", 30, 1, True)
            writer.flush()  # a part per answer: the crash case reads them so

    asyncio.run(session())
    before = fmt.read_kind(writer.root, fmt.BARS)  # from the parts, as a crash leaves them
    writer.close()
    stored = pq.read_table(writer.root / fmt.file_name(fmt.BARS))
    values = pq.read_table(writer.root / fmt.file_name(fmt.BAR_VALUES)).to_pylist()
    # 3 first bars, the revised one and the new one, the last answer's new one
    assert [(v["answer"], v["bar_ts"], v["close"]) for v in values] == [
        (0, 0.0, 1.0),
        (0, m, 2.0),
        (0, 2 * m, 3.0),
        (1, 2 * m, 3.5),
        (1, 3 * m, 4.0),
        (5, 4 * m, 5.0),
    ]
    # only the answer that left a known bar out carries its own lists
    assert [row is not None for row in stored.column("close").to_pylist()] == [
        False,
        False,
        False,
        False,
        True,
        False,
    ]
    for table in (before, fmt.read_kind(writer.root, fmt.BARS)):
        got = [(r["bar_ts"], r["close"]) for r in table.to_pylist()]
        assert got == [(list(a.ts), list(a.close)) for a in answers]
        assert table.column("n_bars").to_pylist() == [len(a) for a in answers]
