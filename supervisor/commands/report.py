"""``report``: a day of the journal (``Journal.day_summary(day)``) rendered as text or JSON.

    journal.day_summary(day) --> DaySummary --render_text--> lines for a person
                                            '--render_json-> one JSON document for a program

The numbers are computed by the journal (supervisor/journal/summary.py); this module only
lays them out, so the text and the JSON always say the same thing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common.config import Settings
from supervisor import exitcodes
from supervisor.commands.options import load
from supervisor.commands.report_html import write_html
from supervisor.commands.report_results import (
    compare_json,
    compare_text,
    day_lines,
    plot_title,
    run_text,
)
from supervisor.journal.day_chart import DayChart, day_chart
from supervisor.journal.results import RunResults, run_results
from supervisor.journal.rows import JournalError, json_ready
from supervisor.journal.store import Journal
from supervisor.journal.summary_types import DaySummary

NONE = "n/a"
MARKETS = ("stub", "sim", "ibkr")
MAX_DAY_CHARTS = 31  # --plot draws a chart per symbol of at most this many days


def _time(ts: float | None, zone: ZoneInfo) -> str:
    return NONE if ts is None else datetime.fromtimestamp(ts, zone).strftime("%H:%M:%S")


def _price(x: float | None) -> str:
    return NONE if x is None else f"{x:.2f}"


def _money(x: float | None) -> str:
    # signed, so a loss can never be read as a gain
    return NONE if x is None else f"{x:+,.2f}"


def _amount(x: float | None) -> str:
    return NONE if x is None else f"{x:,.2f}"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"


def _cycles(s: Mapping[str, Any], zone: ZoneInfo) -> list[str]:
    c = s["cycles"]
    return [
        f"cycles: {c['count']}, first {_time(c['first_ts'], zone)}, "
        f"last {_time(c['last_ts'], zone)}, unfinished {c['unfinished']} | "
        f"symbols ok {c['symbols_ok']} failed {c['symbols_failed']}",
        f"failed symbols: {_counts(c['failed_symbols'])}",
    ]


def _decisions(s: Mapping[str, Any]) -> list[str]:
    sig, d = s["signals"], s["decisions"]
    return [
        f"signals: {_counts(sig['by_kind'])} | skipped {sig['skipped']} | errors {sig['errors']}",
        f"intents: {s['intents']['recorded']} journaled | decisions: accepted {d['accepted']} "
        f"({d['contracts']} contracts), refused {d['refused']}",
        f"rejections by rule: {_counts(d['refused_by_rule'])}",
    ]


def _orders(s: Mapping[str, Any], zone: ZoneInfo) -> list[str]:
    orders = (
        ", ".join(
            f"{o['mode']} {o['status']} {o['count']} ({o['quantity']} contracts)"
            for o in s["orders"]
        )
        or "none"
    )
    fills = s["fills"]
    lines = [
        f"orders: {orders}",
        f"fills: {fills['count']}, commission {_price(fills['commission'])}",
        f"what-if: {len(s['whatifs'])}",
    ]
    lines += [
        f"  {w['contract']}: init margin {_money(w['init_margin_change'])}, "
        f"maint margin {_money(w['maint_margin_change'])}, "
        f"commission {_price(w['commission'])} at {_time(w['ts'], zone)}"
        for w in s["whatifs"]
    ]
    return lines


def _position(p: Mapping[str, Any], label: str) -> str:
    if label == "closed":
        how = f"{p['exit_reason']} exit {_price(p['exit_price'])} realized {_money(p['pnl'])}"
    elif p.get("closed_day"):  # a past day's report: held at that day's end
        how = f"held at the day's end, closed {p['closed_day']} ({p['exit_reason']})"
    else:
        how = f"{p['status']} mark {_price(p['mark'])} unrealized {_money(p['pnl'])}"
    why = (
        f" (signal {p['signal']}, confidence {p['confidence']:.2f})"
        if p.get("signal") and p.get("confidence") is not None
        else ""
    )
    return (
        f"  {label:<6} {p.get('action', 'BUY')} {p['quantity']} x {p['contract']}{why} "
        f"entry {_price(p['entry_price'])} (limit {_price(p['entry_limit'])}) "
        f"tp {_price(p['take_profit'])} sl {_price(p['stop_loss'])} {how}"
    )


def _positions(s: Mapping[str, Any]) -> list[str]:
    ps, pnl = s["positions"], s["pnl"]
    lines = [
        f"positions: opened {ps['opened']}, open {len(ps['open'])}, closed {len(ps['closed'])}"
    ]
    lines += [_position(p, "open") for p in ps["open"]]
    lines += [_position(p, "closed") for p in ps["closed"]]
    lines += _shares(s.get("shares", ()))
    lines.append(
        f"P&L: realized {_money(pnl['realized'])}, unrealized "
        f"{_money(pnl['unrealized'])}, total {_money(pnl['total'])}"
    )
    return lines


def _shares(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Shares an exercise of one of our options delivered (live), while held and the day
    they were closed."""
    lines = [f"exercised shares: {len(rows)}"] if rows else []
    for r in rows:
        what = f"{r['quantity']:+d} {r['symbol']} from {r['intent_id']} at {_price(r['cost'])}"
        if r["status"] == "closed":
            lines.append(
                f"  closed {what}: {r['exit_reason']} at {_price(r['exit_price'])} "
                f"realized {_money(r['pnl'])}"
            )
        else:
            lines.append(
                f"  held   {what}: {r['held']:+d} held, last {_price(r['mark'])} "
                f"unrealized {_money(r['pnl'])}"
            )
    return lines


def _broker(s: Mapping[str, Any], zone: ZoneInfo) -> list[str]:
    """The broker's own figures beside the journal's (live runs journal them every cycle)."""
    b = s.get("broker")
    if not b:
        return []
    return [
        f"broker P&L (IBKR, as of {_time(b['ts'], zone)}): daily {_money(b['daily'])}, "
        f"realized {_money(b['realized'])}, unrealized {_money(b['unrealized'])}, "
        f"net liquidation {_amount(b['net_liquidation'])}"
    ]


def _risk(s: Mapping[str, Any], zone: ZoneInfo) -> list[str]:
    k = s["kill_switch"]
    equity = f"start equity {_amount(k['start_equity'])}"
    if k["halted"]:
        state = f"HALTED at {_time(k['ts'], zone)}: {k['reason']} ({equity})"
    else:
        state = f"off ({equity})"
    alerts: Sequence[Mapping[str, Any]] = s["alerts"]
    lines = [f"kill switch: {state}", f"alerts: {len(alerts)}"]
    lines += [
        f"  {_time(a['ts'], zone)} {a['kind']}"
        f"{'' if a['key'] is None else ' [' + a['key'] + ']'}: {a['text']}"
        for a in alerts
    ]
    controls: Sequence[Mapping[str, Any]] = s.get("controls", ())
    lines += [f"controls: {len(controls)}"] if controls else []
    lines += [
        f"  {_time(c['ts'], zone)} {c['action']} by {c['source']} from {c['peer']}: {c['result']}"
        for c in controls
    ]
    return lines


def render_text(summary: Mapping[str, Any], *, tz: str = "UTC", journal: Path | None = None) -> str:
    """The report as lines of text; clock times in ``tz`` (``report`` passes schedule.timezone,
    the display zone: the day itself is the journal's, counted in the exchange's zone); the
    header names the ``journal`` file when given."""
    zone = ZoneInfo(tz)
    lines = [f"day report {summary['day']} (times {tz})"]
    if journal is not None:
        lines.append(f"journal: {journal}")
    lines += _cycles(summary, zone)
    lines += _decisions(summary)
    lines += _orders(summary, zone)
    lines += _positions(summary)
    lines += _broker(summary, zone)
    lines += _risk(summary, zone)
    return "\n".join(lines) + "\n"


def render_json(summary: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """The summary (or a list of them) as strict JSON (no NaN: a missing number is null)."""
    return json.dumps(json_ready(summary), indent=2, allow_nan=False) + "\n"


def journal_to_read(settings: Settings, broker: str | None) -> Path | None:
    """The journal of ``broker`` (``report`` passes --broker, else with --config the
    settings' ``broker`` key: the market that file trades); without one, the only one
    there is (the path's ``{broker}`` filled in with each market), one with nothing
    journaled yet (a run that never connected left it) counting only when it is the only
    one. None after saying why there is none."""
    template = settings.execution.journal_path
    if broker:
        path = Path(template.format(broker=broker))
        if path.exists():
            return path
        print(f"no journal at {path}: run the bot first{others(template, broker)}", file=sys.stderr)
        return None
    found = [Path(template.format(broker=m)) for m in MARKETS]
    found = [path for path in found if path.exists()]
    if len(found) > 1:
        found = [path for path in found if _has_days(path)] or found[:1]
    if len(found) == 1:
        return found[0]
    if not found:
        print(
            f"no journal at {template.format(broker='<broker>')}: run the bot first",
            file=sys.stderr,
        )
    else:
        print(
            "several journals (" + ", ".join(map(str, found)) + "): name one with "
            "--broker stub|sim|ibkr",
            file=sys.stderr,
        )
    return None


def settings_market(args: argparse.Namespace, settings: Settings) -> str | None:
    """The ``broker:`` a --config file sets (the market it trades: its journal, even when
    another market's holds days), None when it sets none."""
    if args.config is not None and "broker" in settings.model_fields_set:
        return settings.broker
    return None


def others(template: str, broker: str) -> str:
    """A hint naming the other markets' journals that hold days, "" when none does."""
    if "{broker}" not in template:  # one journal for every market: there is no other
        return ""
    with_days = [
        (m, path)
        for m in MARKETS
        if m != broker and (path := Path(template.format(broker=m))).exists() and _has_days(path)
    ]
    return "".join(f" ({path} has days: --broker {m})" for m, path in with_days)


def _has_days(path: Path) -> bool:
    """Whether the journal at ``path`` holds a day (one it cannot read says so later)."""
    try:
        with Journal(path, readonly=True) as journal:
            return journal.latest_day() is not None
    except JournalError:
        return True


def _date(flag: str, value: str | None) -> date | None:
    """``value`` as a date; ValueError naming the flag when it is not a real one."""
    if value is None:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:  # 2025-13-01, 2026-02-30
            pass
    raise ValueError(f"{flag} {value!r}: not a date as YYYY-MM-DD")


def _days(args: argparse.Namespace, journal: Journal) -> list[str]:
    """The days asked for: --day, --from/--to (each day of the range the journal knows),
    else the latest."""
    day, first, last = (
        _date("--day", args.day),
        _date("--from", args.from_day),
        _date("--to", args.to_day),
    )
    if day is not None and (first or last):
        raise ValueError("--day and --from/--to: give one or the other")
    if first or last:
        if first and last and first > last:
            raise ValueError(f"--from {first} is after --to {last}")
        return journal.days_between(str(first or date.min), str(last or date.max))
    if day is not None:
        return [str(day)]
    latest = journal.latest_day()
    return [latest] if latest is not None else []


def cmd_report(args: argparse.Namespace) -> int:
    settings = load(args, overrides=False)
    if settings is None:
        return exitcodes.USAGE
    if args.compare:
        return _compare(args)
    ignored = [f for f, on in (("--json", args.json), ("--results", args.results)) if on]
    if args.html and (ignored or args.plot):  # else silently dropped: --json's stdout not JSON
        clash = ", ".join([*ignored, *(["--plot"] if args.plot else [])])
        print(f"report --html writes one day's page: not with {clash}", file=sys.stderr)
        return exitcodes.USAGE
    market = args.broker or settings_market(args, settings)
    path = _given(args.journal) if args.journal else journal_to_read(settings, market)
    if path is None:
        return exitcodes.USAGE
    try:
        with Journal(path, readonly=True) as journal:
            days = _days(args, journal)
            if args.html:  # the dashboard's page of the day, one file (report_html.py)
                return write_html(journal, days, Path(args.html))
            summaries = [journal.day_summary(d) for d in days]
            read = _results(args, journal, days)
    except ValueError as exc:  # a bad date on the command line
        print(f"report: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    except JournalError as exc:
        print(f"cannot read the journal: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    if not days:
        hint = others(settings.execution.journal_path, market) if market else ""
        return _no_days(args, path, hint, read.run)
    tz = settings.schedule.timezone
    if args.plot and not _plot(Path(args.plot), read, tz):
        return exitcodes.USAGE
    if args.results:
        run = read.run
        assert run is not None
        as_json = render_json({"journal": str(path), **run.as_json()})
        return _print(as_json if args.json else run_text(run, path))
    return _write(summaries, args.json, tz, path, read.days)


def _no_days(args: argparse.Namespace, path: Path, hint: str, run: RunResults | None) -> int:
    """No day in the journal (or the range asked): --json still prints a value for the script
    reading stdout, ``[]`` (the days, none), or with --results the run's empty results."""
    if args.json:
        if hint:
            print(f"report: no days in {path}{hint}", file=sys.stderr)
        none: list[Mapping[str, Any]] = []
        ran = {"journal": str(path), **run.as_json()} if args.results and run else none
        return _print(render_json(ran))
    asked = [f"{f} {v}" for f, v in (("from", args.from_day), ("to", args.to_day)) if v]
    return _print(f"no days in {path}{''.join(' ' + a for a in asked)}{hint}\n")


@dataclass(frozen=True)
class _Read:
    """What ``report`` read besides the day summaries: each day's results, the run's (over
    the days asked, or every day without --day/--from/--to), the days' charts (--plot)."""

    days: list[RunResults]  # none with --results
    run: RunResults | None  # with --results or --plot
    charts: list[DayChart]


def _results(args: argparse.Namespace, journal: Journal, days: list[str]) -> _Read:
    asked = bool(args.day or args.from_day or args.to_day)
    each = [] if args.results else [run_results(journal, [d]) for d in days]
    run = run_results(journal, days if asked else None) if args.results or args.plot else None
    if args.plot and len(days) > MAX_DAY_CHARTS:  # a year is a thousand pictures: the latest
        print(
            f"report --plot: day charts of the latest {MAX_DAY_CHARTS} of the {len(days)} days "
            "(--day or a shorter --from/--to for others)",
            file=sys.stderr,
        )
    charts = [day_chart(journal, d) for d in days[-MAX_DAY_CHARTS:]] if args.plot else []
    return _Read(each, run, charts)


def _given(name: str) -> Path | None:
    """--journal's file, None after saying it is not there."""
    path = Path(name)
    if path.is_file():
        return path
    print(f"no journal at {path}", file=sys.stderr)
    return None


def _plot(out: Path, read: _Read, tz: str) -> bool:
    """Write the pictures (--plot DIR) and say where on stderr (stdout stays the report)."""
    try:
        from supervisor.observe.results_plot import write_plots

        run = read.run
        assert run is not None
        label = "equity" if run.start_equity else "net P&L"
        written = write_plots(
            out,
            run.equity,
            plot_title(run),
            read.charts,
            tz,
            equity_label=label,
            sessions=run.sessions,
        )
    except ImportError as exc:
        print(f"report --plot: matplotlib cannot be imported ({exc})", file=sys.stderr)
        return False
    except OSError as exc:
        print(f"report --plot: cannot write into {out}: {exc}", file=sys.stderr)
        return False
    names = ", ".join(p.name for p in written)
    print(f"report: {len(written)} pictures in {out}: {names}", file=sys.stderr)
    return True


def _compare(args: argparse.Namespace) -> int:
    """--compare J1 J2: the two runs' results side by side (each over the days asked,
    default every day it journaled)."""
    flags = {"--journal": args.journal, "--plot": args.plot, "--results": args.results}
    flags["--html"] = args.html
    clash = [flag for flag, given in flags.items() if given]
    if clash:
        print(
            f"report --compare reads its own two journals: not with {', '.join(clash)}",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    names = [Path(n) for n in args.compare]
    runs: list[RunResults] = []
    for name in names:
        if _given(str(name)) is None:
            return exitcodes.USAGE
        try:
            with Journal(name, readonly=True) as journal:
                asked = bool(args.day or args.from_day or args.to_day)
                runs.append(run_results(journal, _days(args, journal) if asked else None))
        except ValueError as exc:
            print(f"report: {exc}", file=sys.stderr)
            return exitcodes.USAGE
        except JournalError as exc:
            print(f"cannot read the journal: {exc}", file=sys.stderr)
            return exitcodes.USAGE
    a, b = runs
    text = render_json(compare_json(a, b, names)) if args.json else compare_text(a, b, names)
    return _print(text)


def _write(
    summaries: list[DaySummary], as_json: bool, tz: str, path: Path, results: list[RunResults]
) -> int:
    """Print the reports, each naming the journal it was read from (several journals can be
    beside each other) and with its day's results."""
    if as_json:
        named = [
            {**s, "journal": str(path), "results": r.as_json()}
            for s, r in zip(summaries, results, strict=True)
        ]
        text = render_json(named[0] if len(named) == 1 else named)
    else:
        text = "\n".join(
            render_text(s, tz=tz, journal=path) + "\n".join(day_lines(r)) + "\n"
            if s["cycles"]["count"]
            else f"day report {s['day']}: nothing journaled that day in {path}\n"
            for s, r in zip(summaries, results, strict=True)
        )
    return _print(text)


def _print(text: str) -> int:
    """Print ``text``; a reader that goes away (``report | head``) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
    return exitcodes.OK
