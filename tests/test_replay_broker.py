"""The replay's market: which recorded answer a request gets (supervisor/broker/replay_index.py),
the ReplayBroker's answers and models (supervisor/broker/replay.py), and a recording on disk
read back (supervisor/recording/reader.py)."""

from __future__ import annotations

import asyncio
import json
import math
from array import array
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.messages import Bars, OptionChain, OptionContract, OptionQuote, Quote, Right
from supervisor.broker.base import ConnectionLost, SymbolDataError
from supervisor.broker.replay import Recorded, ReplayBroker, option_key, recorded_error
from supervisor.broker.replay_index import Answer, AnswerIndex, Timeline
from supervisor.recording import format as fmt
from supervisor.recording.reader import RecordingError, read_recording

NY = ZoneInfo("America/New_York")
C1 = datetime(2026, 12, 1, 10, 30, tzinfo=NY).timestamp()  # the recorded cycles' starts
C2, C3 = C1 + 60, C1 + 120
EXPIRY = "20261204"


def test_a_cycle_gets_its_own_answers_in_the_order_the_original_got_them() -> None:
    index: AnswerIndex[str, str] = AnswerIndex(
        Timeline([C1, C2, C3]),
        [
            ("SPY", Answer(C1 - 5, "before")),
            ("SPY", Answer(C1 + 0.2, "c1 first")),
            ("SPY", Answer(C1 + 0.9, "c1 second")),
            ("SPY", Answer(C3 + 0.1, "c3")),
        ],
    )

    def value(now: float) -> str | None:
        found = index.at("SPY", now)
        return None if found is None else found.value

    assert index.at("SPY", C1 - 1) == Answer(C1 - 5, "before")
    assert [value(C1) for _ in range(3)] == ["c1 first", "c1 second", "c1 second"]
    # the guard between cycles, later in cycle 1's window: the window's answers, used up
    assert index.at("SPY", C1 + 30) == Answer(C1 + 0.9, "c1 second")
    # a cycle where the original never asked: the latest before, if fresh enough
    assert index.at("SPY", C2) == Answer(C1 + 0.9, "c1 second")
    assert index.at("SPY", C2, max_age=30) is None
    assert value(C3) == "c3"
    assert value(C3 + 3600) == "c3"  # the last window runs on
    assert index.at("QQQ", C1) is None
    # a replayed cycle 1 again (a second replay's broker would start afresh): from the start
    assert value(C1) == "c1 first"
    assert index.latest("SPY", C1) == Answer(C1 + 0.9, "c1 second")  # not used up


def contract(strike: float, right: Right = Right.CALL, expiry: str = EXPIRY) -> OptionContract:
    return OptionContract("SPY", expiry, strike, right, trading_class="SPY")


def recorded(**kinds: Any) -> Recorded:
    quote = Quote("SPY", bid=680.0, ask=680.2, last=680.1, ts=C1 + 0.1)
    chain = OptionChain("SPY", (EXPIRY,), (675.0, 680.0, 685.0), trading_class="SPY")
    bars = Bars("SPY", *(array("d", [C1 - 60]) for _ in range(6)))
    smile = [
        (option_key(contract(k)), Answer(C1 + 0.3, OptionQuote(contract(k), bid=b, ask=a, iv=iv)))
        for k, b, a, iv in ((675.0, 7.9, 8.1, 0.22), (685.0, 2.95, 3.05, 0.18))
    ]
    return Recorded(
        cycles=(C1, C2),
        quotes=kinds.get("quotes", [("SPY", Answer(C1 + 0.1, quote))]),
        chains=[("SPY", Answer(C1 + 0.2, chain))],
        bars=[(("SPY", 1, True), Answer(C1 + 0.15, bars))],
        option_quotes=kinds.get("option_quotes", smile),
    )


def test_the_broker_answers_recorded_values_and_fails_what_was_never_recorded() -> None:
    broker = ReplayBroker(recorded(), lambda: C1, equity=50_000.0)

    async def go() -> None:
        assert (await broker.quote("SPY")).bid == 680.0
        assert (await broker.chain("SPY")).strikes == (675.0, 680.0, 685.0)
        assert len(await broker.bars("SPY", 390, 1, rth=True)) == 1
        with pytest.raises(SymbolDataError, match="no quote of QQQ"):
            await broker.quote("QQQ")
        with pytest.raises(SymbolDataError, match="no 60-minute bars of SPY"):
            await broker.bars("SPY", 3000, 60, rth=True)
        (recorded_call,) = await broker.option_quotes([contract(685.0)])
        assert recorded_call.ask == 3.05 and broker.modelled == []
        account = await broker.account()
        assert account.net_liquidation == 50_000.0
        assert [m.kind for m in broker.modelled] == ["account"]  # said once
        await broker.account()
        assert len(broker.modelled) == 1
        assert await broker.regular_hours("SPY") is None
        assert await broker.closing_price("SPY", datetime(2026, 12, 1).date()) is None

    asyncio.run(go())


def test_an_option_never_recorded_is_modelled_at_the_interpolated_iv_and_flagged() -> None:
    broker = ReplayBroker(recorded(), lambda: C1, equity=50_000.0)
    (q,) = asyncio.run(broker.option_quotes([contract(680.0)]))
    assert q.iv == pytest.approx(0.20)  # halfway between 675's 0.22 and 685's 0.18
    assert q.und_price == pytest.approx(680.1)  # the underlying's recorded mid
    assert q.bid < q.last < q.ask and q.ts == C1
    (flag,) = broker.modelled
    assert (flag.kind, flag.key, flag.ts) == ("option_quote", "SPY 20261204 680C", C1)
    assert "20261204's recorded quotes" in flag.how
    # another expiry, never recorded: the nearest recorded expiry's smile, said so
    (other,) = asyncio.run(broker.option_quotes([contract(680.0, expiry="20261211")]))
    assert other.iv == pytest.approx(0.20)
    assert "none of 20261211" in broker.modelled[-1].how


def test_nothing_to_model_from_is_the_symbols_data_error() -> None:
    broker = ReplayBroker(recorded(option_quotes=[]), lambda: C1, equity=1.0)
    with pytest.raises(SymbolDataError, match="no recorded option quote"):
        asyncio.run(broker.option_quotes([contract(680.0)]))
    no_price = ReplayBroker(recorded(quotes=[], option_quotes=[]), lambda: C1, equity=1.0)
    with pytest.raises(SymbolDataError, match="no recorded price of SPY"):
        asyncio.run(no_price.option_quotes([contract(680.0)]))


def test_recorded_failures_and_left_out_contracts_are_given_again() -> None:
    key = option_key(contract(685.0))
    left_out = recorded(option_quotes=[(key, Answer(C1 + 0.3))])
    assert (
        asyncio.run(ReplayBroker(left_out, lambda: C1, 1.0).option_quotes([contract(685.0)])) == ()
    )
    failing = recorded(option_quotes=[(key, Answer(C1 + 0.3, error="SymbolDataError: no perm"))])
    with pytest.raises(SymbolDataError, match="^no perm$"):
        asyncio.run(ReplayBroker(failing, lambda: C1, 1.0).option_quotes([contract(685.0)]))
    assert isinstance(recorded_error("ConnectionLost: gone"), ConnectionLost)
    assert isinstance(recorded_error("CancelledError: "), TimeoutError)
    odd = recorded_error("KeyError: 'x'")
    assert isinstance(odd, SymbolDataError) and str(odd) == "KeyError: 'x'"


# --- a recording on disk --------------------------------------------------------------------


def write_recording(root: Path, tables: dict[str, list[dict[str, Any]]], **meta: Any) -> Path:
    root.mkdir(parents=True)
    for kind, schema in fmt.SCHEMAS.items():
        rows = tables.get(kind, [])
        columns = {name: [r.get(name) for r in rows] for name in schema.names}
        pq.write_table(pa.table(columns, schema=schema), root / fmt.file_name(kind))
    info = {"format_version": fmt.FORMAT_VERSION, "market": "sim", **meta}
    (root / fmt.META_FILE).write_text(json.dumps(info))
    return root


def test_a_recording_on_disk_reads_back_as_the_brokers_values(tmp_path: Path) -> None:
    opt = {"symbol": "SPY", "expiry": EXPIRY, "strike": 685.0, "right": "P", "call": 1}
    root = write_recording(
        tmp_path / "sim-20261201T153000Z",
        {
            fmt.CYCLES: [{"ts": C1, "cycle": 1, "day": "2026-12-01"}],
            fmt.QUOTES: [{"ts": C1 + 0.1, "symbol": "SPY", "bid": 680.0, "ask": math.nan}],
            fmt.BARS: [
                {"ts": C1, "symbol": "SPY", "minutes": 30, "bar_minutes": 1, "rth": True}
                | {n: [C1 - 60.0] for n in ("bar_ts", "open", "high", "low", "close", "volume")}
            ],
            fmt.OPTION_QUOTES: [
                opt | {"ts": C1 + 0.3, "answered": True, "bid": 2.0, "ask": 2.1, "multiplier": 100},
                opt | {"ts": C1 + 0.4, "strike": 690.0, "answered": False},
            ],
            fmt.HOURS: [
                {"ts": C1, "kind": fmt.HOURS_CLOSE, "symbol": "SPY", "day": "2026-11-30"}
                | {"close": 679.5},
                {"ts": C1, "kind": fmt.HOURS_REGULAR, "symbol": "SPY", "zone": "America/New_York"}
                | {"session_start": [C1 - 3600], "session_end": [C1 + 5.5 * 3600]}
                | {"days": ["2026-12-01"]},
            ],
        },
        account="DU123",
    )
    recording = read_recording(root)
    assert recording.name == "sim-20261201T153000Z" and recording.settings is None
    r = recording.recorded
    assert r.cycles == (C1,) and r.account == "DU123"
    ((_, quote),) = r.quotes
    assert quote.value is not None and quote.value.bid == 680.0 and math.isnan(quote.value.ask)
    ((bars_key, bars),) = r.bars
    assert bars_key == ("SPY", 1, True) and bars.value is not None and len(bars.value) == 1
    (key, answered), (_, left_out) = r.option_quotes
    assert key == ("SPY", EXPIRY, 685.0, "P") and answered.value is not None
    assert answered.value.contract == OptionContract("SPY", EXPIRY, 685.0, Right.PUT)
    assert left_out == Answer(C1 + 0.4, None, None)
    broker = ReplayBroker(r, lambda: C1, 1.0)
    hours = asyncio.run(broker.regular_hours("SPY"))
    assert hours is not None and hours.is_open(C1) is True
    assert asyncio.run(broker.closing_price("SPY", datetime(2026, 11, 30).date())) == 679.5


def test_what_is_not_a_recording_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="not a directory"):
        read_recording(tmp_path / "nothing")
    with pytest.raises(RecordingError, match="no meta.json"):
        read_recording(tmp_path)
    old = write_recording(tmp_path / "old", {}, format_version=99)
    with pytest.raises(RecordingError, match="format version 99; this version reads 1"):
        read_recording(old)
    empty = write_recording(tmp_path / "empty", {})
    with pytest.raises(RecordingError, match="no cycle was recorded"):
        read_recording(empty)


def test_a_recording_cut_short_reads_its_part_files(tmp_path: Path) -> None:
    """A crashed run leaves each flush as a part file: the bars of every part, each row's
    own (the columns are copied from Arrow's buffers chunk by chunk)."""
    root = write_recording(tmp_path / "crashed", {fmt.CYCLES: [{"ts": C1, "cycle": 1}]})
    (root / fmt.file_name(fmt.BARS)).unlink()
    parts = root / fmt.PARTS_DIR / fmt.BARS
    parts.mkdir(parents=True)
    names = ("bar_ts", "open", "high", "low", "close", "volume")
    flushes: list[list[list[float] | None]] = [[[1.0, 2.0], None, [3.0]], [[4.0, 5.0, 6.0]]]
    for n, rows in enumerate(flushes, 1):
        columns: dict[str, list[Any]] = {name: [] for name in fmt.BARS_SCHEMA.names}
        for i, bars in enumerate(rows):
            row = {"ts": C1 + n + i / 10, "symbol": "SPY", "bar_minutes": 1, "rth": True}
            row |= {name: bars for name in names} | {"error": None if bars else "TimeoutError: "}
            for name in columns:
                columns[name].append(row.get(name))
        pq.write_table(pa.table(columns, schema=fmt.BARS_SCHEMA), parts / f"{n:08d}.parquet")
    got = [
        (a.value.close.tolist() if a.value else a.error)
        for _, a in read_recording(root).recorded.bars
    ]
    assert got == [[1.0, 2.0], "TimeoutError: ", [3.0], [4.0, 5.0, 6.0]]


def test_account_answers_are_read_once_the_format_records_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format 1 holds none (the replay models the account); a kind ``account`` with the
    AccountSnapshot's fields as columns is read and answered from, with no other change."""
    schema = pa.schema(
        [("ts", pa.float64()), ("account", pa.string()), ("net_liquidation", pa.float64())]
        + [("available_funds", pa.float64()), ("error", pa.string())]
    )
    monkeypatch.setitem(fmt.SCHEMAS, "account", schema)
    rows = {fmt.CYCLES: [{"ts": C1, "cycle": 1}]}
    root = write_recording(tmp_path / "with-account", rows)
    table = pa.table(
        {"ts": [C1 - 1.0], "account": ["DU9"], "net_liquidation": [123_456.0]}
        | {"available_funds": [100_000.0], "error": [None]},
        schema=schema,
    )
    pq.write_table(table, root / fmt.file_name("account"))
    broker = ReplayBroker(read_recording(root).recorded, lambda: C1, equity=1.0)
    account = asyncio.run(broker.account())
    assert (account.account, account.net_liquidation) == ("DU9", 123_456.0)
    assert broker.modelled == []


def test_the_clock_follows_the_answers_given_never_backwards() -> None:
    """The replay's clock moves on to when the original got each answer, so what it does
    next is stamped (and timed out) when the original's was."""
    now = [C1]
    later = Quote("SPY", bid=1.0, ts=C1 + 7)
    quotes = [("SPY", Answer(C1 - 30, Quote("SPY"))), ("SPY", Answer(C1 + 7, later))]

    def advance(ts: float) -> None:
        now[0] = ts

    broker = ReplayBroker(recorded(quotes=quotes), lambda: now[0], 1.0, advance)
    asyncio.run(broker.quote("SPY"))
    assert now[0] == C1 + 7
    asyncio.run(broker.option_quotes([contract(685.0)]))  # recorded at C1 + 0.3: no step back
    assert now[0] == C1 + 7
    now[0] = C2  # the next cycle: nothing of it recorded, the latest before is older
    asyncio.run(broker.quote("SPY"))
    assert now[0] == C2


def test_symbols_come_in_the_order_the_run_acted_on_them() -> None:
    """The live runner acts on each result as it arrives (the per-cycle caps count in that
    order): right after the symbol's last answer of the cycle."""
    quote = Quote("X")
    rec = Recorded(
        cycles=(C1, C2),
        quotes=[
            ("AAPL", Answer(C1 + 0.1, quote)),
            ("SPY", Answer(C1 + 0.2, quote)),
            ("QQQ", Answer(C2 + 0.1, quote)),
            ("SPY", Answer(C2 + 0.5, quote)),
        ],
        option_quotes=[(option_key(contract(680.0)), Answer(C1 + 0.9, None))],  # SPY's last
    )
    broker = ReplayBroker(rec, lambda: C1, 1.0)
    assert broker.arrival_order(["SPY", "QQQ", "AAPL", "IWM"], C1) == ["AAPL", "SPY", "QQQ", "IWM"]
    assert broker.arrival_order(["SPY", "QQQ", "AAPL"], C2 + 1) == ["QQQ", "SPY", "AAPL"]
