"""``report --html F``: a journal's day as the dashboard's page, one self-contained file.

The same page the running bot serves at ``/`` (supervisor/observe/static), with its CSS, its
JS and the day's state inlined (observe/dashboard.export_html): it opens offline, in any
browser, from a live run's journal, a replay's or a backtest's alike. Without the live part
(connection, soak figures) and without the controls: an export steers nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from supervisor import exitcodes
from supervisor.journal.dashboard_rows import day_state
from supervisor.journal.store import Journal
from supervisor.observe.dashboard import export_html


def add_html_argument(report: argparse.ArgumentParser) -> None:
    report.add_argument(
        "--html",
        metavar="F",
        help="write the day (--day, default the latest) as the dashboard's page to file F",
    )


def write_html(journal: Journal, days: list[str], out: Path) -> int:
    """The page of ``days``' one day written to ``out``; said on stdout. Exit code."""
    if len(days) != 1:
        what = "no day journaled" if not days else f"{len(days)} days asked"
        print(f"report --html: one day at a time ({what}): give --day", file=sys.stderr)
        return exitcodes.USAGE
    state = day_state(journal, days[0])
    if state is None:  # as report says it: not an error, and no empty page written
        print(f"nothing journaled in {journal.path} on {days[0]}", file=sys.stderr)
        return exitcodes.OK
    page = export_html({"live": None, "day": state, "journal": str(journal.path)})
    temporary = out.with_name(f".{out.name}.{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(page, encoding="utf-8")
        temporary.replace(out)  # a reader sees the old page or the new, never half
    except OSError as exc:
        print(f"report --html: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return exitcodes.USAGE
    print(f"dashboard of {days[0]} written to {out} ({len(page.encode()) // 1024} KB)")
    return exitcodes.OK
