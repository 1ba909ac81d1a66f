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
