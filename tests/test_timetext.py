"""Times as dates (common/timetext.py): a date, a zone and a wait in the unit that fits."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from common.timetext import due, span, when

pytestmark = pytest.mark.timeout(30)

NEW_YORK = ZoneInfo("America/New_York")
OPEN = datetime(2026, 12, 7, 9, 30, tzinfo=NEW_YORK).timestamp()  # a Monday


def test_the_next_open_reads_as_a_weekday_date_and_time_in_the_exchanges_zone() -> None:
    friday_close = datetime(2026, 12, 4, 16, 0, tzinfo=NEW_YORK).timestamp()
    assert due(OPEN, friday_close + 30 * 60, NEW_YORK) == "Mon 2026-12-07 09:30 ET, in 65 h"


def test_summer_time_is_et_too_and_another_zone_keeps_its_name() -> None:
    july = datetime(2026, 7, 6, 9, 30, tzinfo=NEW_YORK).timestamp()
    assert when(july, NEW_YORK) == "Mon 2026-07-06 09:30 ET"
    assert when(OPEN, ZoneInfo("Europe/Berlin")) == "Mon 2026-12-07 15:30 CET"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "0 s"), (45, "45 s"), (600, "10 min"), (2730 * 60, "46 h"), (9 * 86_400, "9 d")],
)
def test_a_wait_is_said_in_the_unit_that_fits(seconds: float, text: str) -> None:
    assert span(seconds) == text
