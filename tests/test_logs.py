"""Log lines (supervisor/observe/logs.py): a float shown with %s carries no binary noise."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from common.config import LoggingSettings
from supervisor.observe.logs import LogService

pytestmark = pytest.mark.timeout(30)


def test_a_price_logged_with_percent_s_is_rounded_in_the_console_and_the_file(
    tmp_path: Path,
) -> None:
    console = io.StringIO()
    path = tmp_path / "bot.jsonl"
    service = LogService(LoggingSettings(json_path=str(path)), console)
    try:
        logging.getLogger("test.prices").info(
            "SPY price %s, limit %.1f, count %s", 609.0699999999999, 2.25, 3
        )
    finally:
        service.close()
    line = console.getvalue()
    assert "SPY price 609.07, limit 2.2, count 3" in line, line
    record = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    assert record["message"] == "SPY price 609.07, limit 2.2, count 3"


def _refusal(symbol: str, rule: str) -> None:
    logging.getLogger("test.execution").info(
        "refused BUY %s (signal SELL): %s",
        symbol,
        rule,
        extra={"event": "execution", "accepted": False, "symbol": symbol, "signal": "SELL"}
        | {"rule": rule},
    )


def test_a_refusal_repeated_cycle_after_cycle_is_counted_on_the_console_kept_in_the_file(
    tmp_path: Path,
) -> None:
    console = io.StringIO()
    path = tmp_path / "bot.jsonl"
    service = LogService(LoggingSettings(json_path=str(path)), console)
    try:
        for _ in range(120):  # a put held all day: the same SELL refused every cycle
            _refusal("SPY", "already_positioned")
        _refusal("QQQ", "already_positioned")  # another symbol: said at once
        logging.getLogger("test.other").info("cycle done")  # anything else: untouched
    finally:
        service.close()
    shown = console.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in shown] == [
        "refused BUY SPY (signal SELL): already_positioned",
        "refused BUY SPY (signal SELL): already_positioned "
        "[the same refusal 10 times this run; the JSON log has each]",
        "refused BUY SPY (signal SELL): already_positioned "
        "[the same refusal 100 times this run; the JSON log has each]",
        "refused BUY QQQ (signal SELL): already_positioned",
        "cycle done",
    ]
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert sum(1 for r in records if r.get("event") == "execution") == 121
    assert all("[the same" not in r["message"] for r in records)
