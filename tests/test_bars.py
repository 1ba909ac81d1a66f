"""Bars helpers: rows to columns, tail, and N-minute resampling against hand-built bars."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.bars import bars_from_rows, resample, tail
from common.messages import Bars

pytestmark = pytest.mark.timeout(30)

NAN = math.nan
B = 5_666_667 * 300  # 1_700_000_100: a multiple of 5 minutes
H = 472_222 * 3600  # 1_699_999_200: a multiple of an hour


def rows_of(bars: Bars) -> list[tuple[float, ...]]:
    return list(zip(bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume, strict=True))


def test_bars_from_rows_builds_columns() -> None:
    bars = bars_from_rows("SPY", [(60, 1, 2, 0.5, 1.5, 10), (120, 1.5, 3, 1, 2.5, 20)])
    assert bars.symbol == "SPY" and len(bars) == 2
    assert list(bars.ts) == [60.0, 120.0]
    assert list(bars.open) == [1.0, 1.5]
    assert list(bars.high) == [2.0, 3.0]
    assert list(bars.low) == [0.5, 1.0]
    assert list(bars.close) == [1.5, 2.5]
    assert list(bars.volume) == [10.0, 20.0]
    assert bars.ts.typecode == "d"


def test_bars_from_rows_rejects_short_rows() -> None:
    with pytest.raises(ValueError, match="6 values"):
        bars_from_rows("SPY", [(60, 1, 2, 0.5, 1.5)])  # type: ignore[list-item]


def test_bars_from_rows_empty() -> None:
    assert len(bars_from_rows("X", [])) == 0


def test_tail() -> None:
    rows = [(60.0 * i, i, i + 1, i - 1, i + 0.5, 10.0 * i) for i in range(1, 6)]
    bars = bars_from_rows("QQQ", rows)
    assert rows_of(tail(bars, 2)) == rows[3:]
    assert tail(bars, 2).symbol == "QQQ"
    assert rows_of(tail(bars, 10)) == rows
    assert len(tail(bars, 0)) == 0
    assert len(tail(bars, -3)) == 0
    # a copy: the source stays whole
    assert len(bars) == 5


def test_resample_five_minutes_by_hand() -> None:
    rows = [
        # the bucket [B-300, B): partial at the start
        (B - 120, 10.0, 11.0, 9.5, 10.5, 100.0),
        (B - 60, 10.5, 12.0, 10.0, 11.0, 50.0),
        # the bucket [B, B+300): full
        (B + 0, 11.0, 11.2, 10.8, 11.1, 10.0),
        (B + 60, 11.1, 13.0, 11.0, 12.5, 20.0),
        (B + 120, 12.5, 12.6, 9.0, 9.5, 30.0),
        (B + 180, 9.5, 10.0, 9.4, 9.8, 40.0),
        (B + 240, 9.8, 10.2, 9.7, 10.1, 50.0),
        # the bucket [B+300, B+600): partial at the end
        (B + 300, 10.1, 10.4, 10.0, 10.3, 7.0),
    ]
    out = resample(bars_from_rows("SPY", rows), 5)
    assert out.symbol == "SPY"
    assert rows_of(out) == [
        (B - 300, 10.0, 12.0, 9.5, 11.0, 150.0),
        (B, 11.0, 13.0, 9.0, 10.1, 150.0),
        (B + 300, 10.1, 10.4, 10.0, 10.3, 7.0),
    ]


def test_resample_skips_nan_closes() -> None:
    rows = [
        (B + 0, 11.0, 15.0, 10.8, NAN, 999.0),  # dropped whole: its high must not count
        (B + 60, 11.1, 13.0, 11.0, 12.5, 20.0),
        (B + 120, 12.5, 12.6, 9.0, 9.5, 30.0),
        (B + 180, 9.5, 10.0, 9.4, NAN, 40.0),  # the bucket's close is the last good one
        (B + 300, 10.1, 10.4, 10.0, NAN, 7.0),  # a bucket of nothing disappears
    ]
    out = resample(bars_from_rows("SPY", rows), 5)
    assert rows_of(out) == [(B, 11.1, 13.0, 9.0, 9.5, 50.0)]


def test_resample_hourly_alignment() -> None:
    rows = [(H + 60.0 * m, 1.0, 2.0, 0.5, 1.0 + m, 1.0) for m in range(30, 150)]
    out = resample(bars_from_rows("SPY", rows), 60)
    assert list(out.ts) == [H, H + 3600, H + 7200]
    assert all(t % 3600 == 0 for t in out.ts)
    assert list(out.volume) == [30.0, 60.0, 30.0]  # minutes 30-59, 60-119, 120-149
    assert list(out.open) == [1.0] * 3
    assert list(out.close) == [1.0 + 59, 1.0 + 119, 1.0 + 149]


def test_resample_sorts_by_time() -> None:
    rows = [
        (B + 60, 2.0, 2.5, 1.5, 2.2, 1.0),
        (B + 0, 1.0, 1.5, 0.5, 1.2, 1.0),
    ]
    out = resample(bars_from_rows("SPY", rows), 5)
    assert rows_of(out) == [(B, 1.0, 2.5, 0.5, 2.2, 2.0)]


def test_resample_one_minute_keeps_minute_bars() -> None:
    rows = [(B + 60.0 * i, 1.0, 2.0, 0.5, 1.5, 3.0) for i in range(4)]
    assert rows_of(resample(bars_from_rows("X", rows), 1)) == rows


def test_resample_rejects_zero_width() -> None:
    with pytest.raises(ValueError):
        resample(bars_from_rows("X", []), 0)


def test_resample_empty() -> None:
    assert len(resample(Bars("X"), 5)) == 0


minute_bar = st.tuples(
    st.integers(min_value=0, max_value=600),  # minute offset from B
    st.floats(min_value=1.0, max_value=500.0),  # close
    st.floats(min_value=0.0, max_value=5.0),  # high above close
    st.floats(min_value=0.0, max_value=5.0),  # low below close
    st.integers(min_value=0, max_value=10_000),  # volume
)


@given(st.lists(minute_bar, max_size=200), st.sampled_from([1, 2, 5, 15, 60, 390]))
def test_resample_properties(raw: list[tuple[int, float, float, float, int]], n: int) -> None:
    rows = sorted(
        ((B + 60.0 * m, c, c + up, max(c - down, 0.01), c, float(v)) for m, c, up, down, v in raw),
        key=lambda r: r[0],
    )
    out = resample(bars_from_rows("X", rows), n)
    width = 60 * n
    # one output bar per distinct bucket, each aligned to the grid
    assert list(out.ts) == sorted({r[0] // width * width for r in rows})
    for i, start in enumerate(out.ts):
        members = [r for r in rows if start <= r[0] < start + width]
        assert out.open[i] == members[0][1]
        assert out.high[i] == max(r[2] for r in members)
        assert out.low[i] == min(r[3] for r in members)
        assert out.close[i] == members[-1][4]
        assert out.volume[i] == sum(r[5] for r in members)  # integers: exact
    assert sum(out.volume) == sum(r[5] for r in rows)
