"""The flight recorder over a run of days: its files and its memory stay bounded.

A run of many days used to keep a part file per kind per cycle until its end, and the bars'
encoder every bar of the run; here many cycles over several sessions are driven through the
Recording with a pinned clock, and the part files on disk and the encoder's series are
counted after every cycle.
"""

from __future__ import annotations

import asyncio
import os
from array import array
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from common.messages import Bars
from supervisor.recording import format as fmt
from supervisor.recording import writer as writer_module
from supervisor.recording.bars_delta import Series
from supervisor.recording.recorder import Recording
from supervisor.recording.recording_broker import RecordingBroker
from supervisor.recording.writer import RecordingWriter, merge_into
from tests.conftest import make_settings
from tests.test_recording import NOW, Clock, Scripted

pytestmark = pytest.mark.timeout(60)

DAYS, CYCLES_A_DAY, EVERY = 4, 40, 10
NARROW, WIDE = 10, 20  # bars an answer holds; every 7th cycle asks the wider lookback


def answer(times: list[float], k: int) -> Bars:
    """The answer at cycle ``k``: the last bars up to the k-th bar start, the newest one
    still forming (its close revised by the next cycle's answer)."""
    width = WIDE if k % 7 == 0 else NARROW
    ts = times[max(0, k + 1 - width) : k + 1]
    close = [t / 60 + (0.25 if i == len(ts) - 1 else 0.0) for i, t in enumerate(ts)]
    return Bars("SPY", *(array("d", c) for c in (ts, close, close, close, close, [10.0] * len(ts))))


def test_a_run_of_days_keeps_a_bounded_number_of_files_and_of_remembered_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "COMPACT_CYCLES", EVERY)
    times = [NOW + d * 86_400 + i * 60 for d in range(DAYS) for i in range(CYCLES_A_DAY)]
    answers = [answer(times, k) for k in range(len(times))]
    clock = Clock()
    inner = Scripted(make_settings(tmp_path).stub, clock.now, answers=list(answers))
    recording = Recording(tmp_path / "rec", "sim", inner, clock.now, make_settings(tmp_path))
    kinds = (fmt.BARS, fmt.BAR_VALUES, fmt.CYCLES)  # the kinds this run records

    async def session() -> None:
        for k, ts in enumerate(times):
            day = k // CYCLES_A_DAY
            clock.ts = ts
            recording.cycle_started(k + 1, f"2026-12-{day + 1:02d}", ts)
            await recording.broker.bars("SPY", 30, 1, True)
            recording.cycle_ended()
            on_disk = sum(len(os.listdir(recording.path / fmt.PARTS_DIR / kind)) for kind in kinds)
            # one per past session, today's merges, the parts since the last merge
            bound = len(kinds) * (day + CYCLES_A_DAY // EVERY + EVERY)
            assert on_disk == recording.writer.part_count() <= bound
            if k % CYCLES_A_DAY == 0:  # a session's first cycle: each past one is one file
                assert len(os.listdir(recording.path / fmt.PARTS_DIR / fmt.CYCLES)) == day + 1
            series = recording.broker._bars.known[("SPY", 1, True)]
            assert len(series.ts) <= 3 * WIDE

    asyncio.run(session())
    files = sorted(os.listdir(recording.path / fmt.PARTS_DIR / fmt.CYCLES))
    # one file per session before the last, and the last one's merges of EVERY cycles
    assert len(files) == DAYS - 1 + CYCLES_A_DAY // EVERY
    expected = [(list(a.ts), list(a.close)) for a in answers]
    before = fmt.read_kind(recording.path, fmt.BARS).to_pylist()  # as a crash leaves it
    assert [(r["bar_ts"], r["close"]) for r in before] == expected
    recording.close()
    after = fmt.read_kind(recording.path, fmt.BARS).to_pylist()
    assert [(r["bar_ts"], r["close"]) for r in after] == expected
    cycles = pq.read_table(recording.path / fmt.file_name(fmt.CYCLES)).column("cycle")
    assert cycles.to_pylist() == list(range(1, len(times) + 1))


def test_a_merge_cut_short_by_a_crash_leaves_no_row_twice(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "rec")
    for cycle in range(1, 5):
        writer.add(fmt.CYCLES, {"ts": NOW + cycle, "cycle": cycle, "day": "2026-12-01"})
        writer.flush()
    folder = writer.root / fmt.PARTS_DIR / fmt.CYCLES
    parts = sorted(folder.iterdir())
    assert [p.name for p in parts] == [fmt.part_name(n) for n in range(4)]
    # the merge of the first three wrote its file, then the process died before deleting
    merge_into(parts[:3], fmt.SCHEMAS[fmt.CYCLES], folder / "merge.tmp")
    os.replace(folder / "merge.tmp", parts[0])
    assert fmt.part_files(writer.root, fmt.CYCLES) == [parts[0], parts[3]]
    assert fmt.read_kind(writer.root, fmt.CYCLES).column("cycle").to_pylist() == [1, 2, 3, 4]
    writer._lock.close()
    assert writer_module.complete(writer.root)
    final = pq.read_table(writer.root / fmt.file_name(fmt.CYCLES))
    assert final.column("cycle").to_pylist() == [1, 2, 3, 4]


def test_an_answer_reaching_below_the_forgotten_bars_carries_its_own(tmp_path: Path) -> None:
    times = [NOW + i * 60 for i in range(200)]
    answers = [answer(times, k) for k in range(1, 200, 7)]  # narrow ones, a few wide
    clock = Clock()
    writer = RecordingWriter(tmp_path / "rec")
    inner = Scripted(make_settings(tmp_path).stub, clock.now, answers=list(answers))
    broker = RecordingBroker(inner, writer, clock.now)
    series = broker._bars.known.setdefault(("SPY", 1, True), Series())

    async def ask() -> None:
        await broker.bars("SPY", 30, 1, True)
        writer.flush()

    async def session() -> None:
        for _ in range(len(answers)):
            await ask()
        assert series.horizon > times[10]  # the oldest bars were forgotten
        # the bars the encoder still knows, and one it forgot; the ones between left out:
        # a reader, which forgets nothing, holds them
        last = Bars("SPY", *(array("d", c) for c in _with_bar(series, times[10])))
        answers.append(last)
        inner.answers.append(last)
        await ask()

    asyncio.run(session())
    expected = [(list(a.ts), list(a.close)) for a in answers]
    stored = fmt.read_kind(writer.root, fmt.BARS)
    assert [(r["bar_ts"], r["close"]) for r in stored.to_pylist()] == expected
    writer.close()
    own = pq.read_table(writer.root / fmt.file_name(fmt.BARS)).column("close").to_pylist()
    assert own[-1] is not None  # the last answer's bars stored with it, not derived


def _with_bar(series: Series, ts: float) -> list[list[float]]:
    """The series' six columns with a bar at ``ts`` (all values ts / 60) before them."""
    return [[ts if i == 0 else ts / 60, *column] for i, column in enumerate(series.columns)]
