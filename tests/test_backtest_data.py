"""A backtest's data folder checked (supervisor/backtest/data.py): every problem names the file,
the line and what is wrong; the exchange calendar's holidays and early closes are the rule."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from common.calendar import nyse
from supervisor.backtest.data import count_cycles, cycle_times, load, symbols_in
from supervisor.backtest.files import DataError
from tools.backtest_data import write_bars

pytestmark = pytest.mark.timeout(30)

MON, TUE = date(2026, 11, 30), date(2026, 12, 1)
THANKSGIVING_WEEK = (date(2026, 11, 25), date(2026, 11, 27))  # Thu closed, Fri ends 13:00


def problems(folder: Path, first: date = MON, last: date = MON) -> list[str]:
    with pytest.raises(DataError) as caught:
        load(folder, symbols_in(folder), first, last, nyse())
    return [str(p) for p in caught.value.problems]


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_a_clean_folder_loads_with_one_cycle_per_bar_minute(tmp_path: Path) -> None:
    for symbol in ("SPY", "QQQ"):
        write_bars(tmp_path, symbol, MON, TUE)
    data = load(tmp_path, ["SPY", "QQQ"], MON, TUE, nyse())
    assert data.symbols == ("SPY", "QQQ") and data.options == {} and data.iv is None
    assert len(data.bars["SPY"].ts) == 2 * 390
    times = list(cycle_times(nyse(), MON, TUE))
    assert len(times) == count_cycles(nyse(), MON, TUE) == 780
    assert times[0] == data.bars["SPY"].ts[0] and times[-1] == data.bars["SPY"].ts[-1]


def test_a_holiday_and_an_early_close_come_from_the_calendar(tmp_path: Path) -> None:
    first, last = THANKSGIVING_WEEK
    path = write_bars(tmp_path, "SPY", first, last)
    data = load(tmp_path, ["SPY"], first, last, nyse())
    # Wednesday whole, Thursday closed, Friday 09:30-13:00
    assert len(data.bars["SPY"].ts) == count_cycles(nyse(), first, last) == 390 + 210
    # a bar on the holiday, and one after the early close, are refused by line
    rows = lines_of(path)
    holiday = rows[390].replace("2026-11-25T15:59", "2026-11-26T10:00")
    late = rows[-1].replace("T12:59", "T13:00")
    path.write_text("".join([*rows[:391], holiday, *rows[391:], late]))
    assert problems(tmp_path, first, last) == [
        f"{path}: line 392: 2026-11-26T10:00:00-05:00: 2026-11-26 has no regular session "
        "(holiday, weekend)",
        f"{path}: line 603: 2026-11-27T13:00:00-05:00 is outside the regular session of "
        "2026-11-27 (09:30-13:00)",
    ]


def test_a_missing_column_is_named_with_the_columns_there_are(tmp_path: Path) -> None:
    path = write_bars(tmp_path, "SPY", MON, MON)
    rows = lines_of(path)
    path.write_text("ts,open,high,low,close\n" + "".join(rows[1:]))
    assert problems(tmp_path) == [
        f"{path}: line 1: missing column 'volume' (columns: ts, open, high, low, close)"
    ]


def test_rows_out_of_order_and_a_gap_inside_a_session(tmp_path: Path) -> None:
    path = write_bars(tmp_path, "SPY", MON, MON)
    rows = lines_of(path)
    swapped = [*rows[:10], rows[11], rows[10], *rows[12:]]  # 09:39 then 09:40, 09:39 again
    path.write_text("".join(swapped))
    assert problems(tmp_path) == [
        f"{path}: line 11: gap: no bars from 09:39 to 09:39 inside the session of 2026-11-30",
        f"{path}: line 12: not in time order: 2026-11-30T09:39:00-05:00 after "
        "2026-11-30T09:40:00-05:00",
    ]
    path.write_text("".join([*rows[:31], *rows[33:]]))  # 10:00 and 10:01 gone
    assert problems(tmp_path) == [
        f"{path}: line 32: gap: no bars from 10:00 to 10:01 inside the session of 2026-11-30"
    ]
    path.write_text("".join(rows[:-1]))  # 15:59 gone: the session ends early
    assert problems(tmp_path) == [
        f"{path}: line 390: gap: the session of 2026-11-30 closes at 16:00, its last bar is "
        "at 15:58"
    ]


def test_a_row_with_a_bad_value_is_its_only_problem_not_also_a_gap(tmp_path: Path) -> None:
    path = write_bars(tmp_path, "SPY", MON, MON)
    rows = lines_of(path)
    ts, _, *rest = rows[4].split(",")  # line 5: 09:33
    bad_close = rows[-1].rsplit(",", 2)
    path.write_text(
        "".join([*rows[:4], ",".join([ts, "x", *rest]), *rows[5:-1]])
        + ",".join([bad_close[0], "y", bad_close[2]])
    )
    found = problems(tmp_path)
    assert found == [
        f"{path}: line 5: open 'x' is not a number",
        f"{path}: line 391: close 'y' is not a number",
    ], found


def test_a_byte_that_is_not_utf8_is_named_by_line_and_column(tmp_path: Path) -> None:
    path = write_bars(tmp_path, "SPY", MON, MON)
    raw = path.read_bytes().split(b"\n")
    raw[4] = raw[4] + b",caf\xe9"
    path.write_bytes(b"\n".join(raw))
    [said] = problems(tmp_path)
    assert said.startswith(f"{path}: line 5: not UTF-8: byte 0xe9 at column ")


def test_timestamps_without_an_offset_or_in_the_wrong_zone(tmp_path: Path) -> None:
    path = write_bars(tmp_path, "SPY", MON, MON)
    rows = lines_of(path)
    naive = rows[1].replace("-05:00", "")
    path.write_text("".join([rows[0], naive, *rows[2:]]))
    assert problems(tmp_path)[0] == (
        f"{path}: line 2: ts 2026-11-30T09:30:00 has no UTC offset (write it as "
        "2026-11-30T09:30:00-05:00 or +00:00)"
    )
    # New York's wall times labelled UTC: every bar is hours before the open
    path.write_text("".join([rows[0], *(r.replace("-05:00", "+00:00") for r in rows[1:])]))
    said = problems(tmp_path)
    assert said[0] == (
        f"{path}: line 2: 2026-11-30T04:30:00-05:00 is outside the regular session of "
        "2026-11-30 (09:30-16:00)"
    )
    assert len(said) == 11 and said[-1] == f"{path}: more problems after these 10: not all said"


def test_a_day_of_the_range_without_bars_and_a_missing_file(tmp_path: Path) -> None:
    write_bars(tmp_path, "SPY", MON, MON)
    with pytest.raises(DataError) as caught:
        load(tmp_path, ["SPY", "QQQ"], MON, TUE, nyse())
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'SPY.csv'}: no bars for the session of 2026-12-01 (inside --from .. --to)",
        f"{tmp_path / 'QQQ.csv'}: no such file (nor .parquet)",
    ]


def test_parquet_bars_load_like_csv_and_naive_timestamps_are_refused(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    csv_dir, pq_dir = tmp_path / "csv", tmp_path / "pq"
    write_bars(csv_dir, "SPY", MON, MON)
    pq_dir.mkdir()
    pacsv = pytest.importorskip("pyarrow.csv")
    table = pacsv.read_csv(csv_dir / "SPY.csv")  # ts as read: aware timestamps
    pq.write_table(table, pq_dir / "SPY.parquet")
    from_csv = load(csv_dir, ["SPY"], MON, MON, nyse()).bars["SPY"]
    from_parquet = load(pq_dir, ["SPY"], MON, MON, nyse()).bars["SPY"]
    assert from_parquet.ts == from_csv.ts and from_parquet.close == from_csv.close
    naive = table.set_column(0, "ts", table.column("ts").cast(pa.timestamp("s")))
    pq.write_table(naive, pq_dir / "SPY.parquet")
    assert problems(pq_dir) == [
        f"{pq_dir / 'SPY.parquet'}: column 'ts' holds timestamps without a time zone (UTC offset)"
    ]
