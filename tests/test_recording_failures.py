"""The flight recorder never stops, fails or delays trading: whatever its own work raises
switches the recording off (said once), and the broker's answer or exception reaches the
caller as the wrapped broker gave it; a recording that cannot even be opened leaves the run
trading, alerted and journaled as "recording off"."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor import exitcodes
from supervisor.broker.base import Fill, OrderRejected, PlacedBracket
from supervisor.broker.stub import StubBroker
from supervisor.recording import format as fmt
from supervisor.recording import retention
from supervisor.recording.recording_broker import RecordingBroker
from supervisor.recording.retention import complete_crashed, new_path
from supervisor.recording.writer import RecordingWriter
from supervisor.runtime.clock import SimClock
from supervisor.runtime.sessions import Recorder, run_supervisor
from tests.conftest import make_settings
from tests.sessions import TUESDAY_MORNING

pytestmark = pytest.mark.timeout(60)

NOW = TUESDAY_MORNING.timestamp()
HUGE = 2**64  # no int64 holds it: Parquet refuses the row with a plain OverflowError
CONTRACT = OptionContract("SPY", "20261204", 600.0, Right.CALL)
INTENT = OrderIntent("i-1", 1, "SPY", CONTRACT, Signal.BUY, 2.5, 3.0, 2.0, 2.45, 0.7, ("r",))


class Venue(StubBroker):
    """Order ids the recording cannot hold; a refusal when asked for one."""

    refuse: OrderRejected | None = None

    async def place_order(self, *args: Any) -> int:
        return HUGE

    async def place_bracket(self, intent: OrderIntent, quantity: int, account: str) -> Any:
        if self.refuse is not None:
            raise self.refuse
        return PlacedBracket((HUGE, HUGE + 1, HUGE + 2), (1, 2, 3))

    def fills(self) -> list[Fill]:
        return [Fill("e1", 11, "i-1", "BOT", 2, 2.5, NOW + 5)]


def venue(tmp_path: Path) -> tuple[RecordingBroker, RecordingWriter, Venue]:
    inner = Venue(make_settings(tmp_path).stub, lambda: NOW)
    # every row to disk at once: the writer's failure comes on the order's own call
    writer = RecordingWriter(tmp_path / "rec", flush_rows=1)
    return RecordingBroker(inner, writer, lambda: NOW), writer, inner


def said_off(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "recording_failed"]


@pytest.mark.parametrize("call", ["place_order", "place_bracket"])
def test_an_order_the_recorder_cannot_write_is_placed_and_the_recording_goes_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, call: str
) -> None:
    broker, writer, _ = venue(tmp_path)

    async def place() -> Any:
        if call == "place_order":
            return await broker.place_order(CONTRACT, "SELL", 1, 2.5, "DU1", "exit-1")
        return await broker.place_bracket(INTENT, 1, "DU1")

    with caplog.at_level(logging.ERROR, "supervisor.recording"):
        placed = asyncio.run(place())
        assert placed == HUGE or placed.order_ids[0] == HUGE  # the caller knows it is working
        assert writer.closed and "OverflowError" in (writer.failure or "")
        again = asyncio.run(place())  # the run goes on: answered, nothing more recorded
    assert again == placed
    (error,) = said_off(caplog)  # said once
    assert error.levelno == logging.ERROR
    broker.fills()  # off: nothing of it written, nothing raised
    writer.close()


def test_a_refusal_reaches_the_caller_unchanged_when_the_recorder_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, writer, inner = venue(tmp_path)
    inner.refuse = OrderRejected("201: margin", 201, (14, 15, 16))

    def broken(*args: Any) -> None:
        raise OverflowError("the recorder's own bug")

    monkeypatch.setattr(writer, "add", broken)
    with pytest.raises(OrderRejected) as raised:
        asyncio.run(broker.place_bracket(INTENT, 1, "DU1"))
    assert raised.value is inner.refuse  # the venue's own exception, not the recorder's
    assert "OverflowError" in (writer.failure or "")
    assert broker.fills() == inner.fills()  # the executions still reach the desk
    bars = asyncio.run(broker.bars("SPY", 30))  # and the market answers
    assert bars.symbol == "SPY"


def test_a_failing_cycle_end_turns_the_recording_off_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    recorder = Recorder(settings, "sim", StubBroker(settings.stub, lambda: NOW), lambda: NOW)
    assert recorder.recording is not None and recorder.off() is None

    def broken() -> None:
        raise OverflowError("flush")

    monkeypatch.setattr(recorder.recording.writer, "cycle_ended", broken)
    seen: list[Any] = []
    recorder.cycle_started(1, "2026-12-01", NOW)
    recorder.flushing(seen.append)("summary")  # type: ignore[arg-type]
    assert seen == ["summary"]  # the caller's own callback still runs
    assert "cycle end: OverflowError" in (recorder.off() or "")
    recorder.close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_recording_that_cannot_be_opened_leaves_the_run_trading(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        stub={"start": TUESDAY_MORNING.isoformat()},
        schedule={"cycles": 2, "interval_s": 60},
    )
    (tmp_path / "recordings").write_text("a file where the recordings' folder goes")
    clock = SimClock(settings.stub.start.timestamp())
    broker = StubBroker(settings.stub, clock.now)
    code, _ = run_supervisor(
        settings, broker, clock, echo=lambda _: None, console=False, record="sim"
    )
    assert code == exitcodes.OK
    with sqlite3.connect(tmp_path / "journal.sqlite") as db:
        cycles = db.execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
        alerts = db.execute("SELECT kind, text FROM alerts WHERE kind = 'recording'").fetchall()
    assert cycles == 2
    ((kind, text),) = alerts
    assert text.startswith("recording off: cannot open it under") and "FileExistsError" in text
    logged = [json.loads(line) for line in (tmp_path / "bot.jsonl").read_text().splitlines()]
    failed = [e for e in logged if e.get("event") == "recording_failed"]
    assert len(failed) == 1 and failed[0]["levelname"] == "ERROR"


def test_a_recording_whose_meta_cannot_be_written_leaves_no_folder_and_the_run_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: RecordingWriter, meta: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RecordingWriter, "write_meta", full)
    settings = make_settings(tmp_path)
    recorder = Recorder(settings, "sim", StubBroker(settings.stub, lambda: NOW), lambda: NOW)
    assert recorder.recording is None and "No space left" in (recorder.off() or "")
    assert list((tmp_path / "recordings").iterdir()) == []  # no half-made recording
    recorder.cycle_started(1, "2026-12-01", NOW)  # the run's calls go on, doing nothing
    recorder.close()


def test_a_crashed_recording_that_cannot_be_completed_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "recordings"
    crashed = new_path(root, "sim", NOW)
    writer = RecordingWriter(crashed)
    writer.write_meta({"market": "sim"})
    writer.add(fmt.CYCLES, {"ts": NOW, "cycle": 1, "day": "2026-12-01"})
    writer.flush()
    writer._lock.close()  # killed: its lock let go, its parts left

    def broken(path: Path) -> bool:
        raise OverflowError("a part no reader can take")

    monkeypatch.setattr(retention, "complete", broken)
    assert complete_crashed(root) == []  # said, skipped: this run's recording still opens
