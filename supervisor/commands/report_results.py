"""``report``'s results: the figures of supervisor/journal/results.py laid out as text, the
two runs of ``--compare`` side by side, and the pictures of ``--plot``.

    report --results            the run over the days asked (default: every journaled day)
    report --compare J1 J2      two journals' runs side by side (parameter A against B)
    report --plot DIR           equity.png and a day chart per symbol (results_plot.py)

A day's own report (report.py) carries its day's results as a short section
(``day_lines``) and, in JSON, under ``results``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from supervisor.journal.results import Figures, RunResults

NONE = "n/a"


def add_results_arguments(report: argparse.ArgumentParser) -> None:
    """The results options of ``report`` (cli.py registers the command)."""
    report.add_argument(
        "--journal", help="read this journal file (any: a replay's, a backtest's, a copy)"
    )
    report.add_argument(
        "--results",
        action="store_true",
        help="the run's results over the days asked (default: every day in the journal)",
    )
    report.add_argument(
        "--compare",
        nargs=2,
        metavar=("J1", "J2"),
        help="two journals' results side by side (text, or --json)",
    )
    report.add_argument(
        "--plot",
        metavar="DIR",
        help="write equity.png and a day chart per symbol (<day>-<SYMBOL>.png) into DIR",
    )


def plot_title(r: RunResults) -> str:
    """The equity picture's title: the run's figures."""
    f = r.run
    days = f"{r.days[0]}..{r.days[-1]} ({_days(len(r.days))})" if r.days else "no days"
    return (
        f"{days}: {f.trades} trades, win rate {_share(f.win_rate)}, net {_money(f.net_pnl)} "
        f"(commissions {f.commissions:,.2f})\nmax drawdown {_drawdown(f)}, "
        f"daily Sharpe {_ratio(f.sharpe_daily)}, open at the end {r.open_positions} "
        f"(unrealized {_money(r.unrealized)})"
    )


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _money(x: float) -> str:
    return f"{x:+,.2f}"


def _share(x: float | None) -> str:
    return NONE if x is None else f"{x:.1%}"


def _ratio(x: float | None) -> str:
    return NONE if x is None else f"{x:.2f}"


def _drawdown(f: Figures) -> str:
    pct = "" if f.max_drawdown_pct is None else f" ({f.max_drawdown_pct:.2%})"
    return f"{f.max_drawdown:,.2f}{pct}"


def figures_line(f: Figures) -> str:
    """Trades and money of a run, a day or a symbol, on one line."""
    return (
        f"trades {f.trades}, wins {f.wins} ({_share(f.win_rate)}), gross {_money(f.gross_pnl)}, "
        f"commissions {f.commissions:,.2f}, net {_money(f.net_pnl)}, "
        f"max drawdown {_drawdown(f)}, exposure {_share(f.exposure)}"
    )


def day_lines(r: RunResults) -> list[str]:
    """A day's results in its day report: the day's figures, then each symbol's."""
    lines = [f"results: {figures_line(r.run)}"]
    lines += [
        f"  {s.symbol}: trades {s.figures.trades}, win rate {_share(s.figures.win_rate)}, "
        f"net {_money(s.figures.net_pnl)}, exposure {_share(s.figures.exposure)}"
        for s in r.by_symbol
    ]
    return lines


def run_text(r: RunResults, journal: Path) -> str:
    """The run's results: the run, each day, each symbol."""
    f = r.run
    span = f"{r.days[0]}..{r.days[-1]}" if r.days else "no days"
    lines = [
        f"results {span} ({_days(len(r.days))}, {f.cycles} cycles)",
        f"journal: {journal}",
        f"run: {figures_line(f)}",
        f"  daily Sharpe {_ratio(f.sharpe_daily)}, Sortino {_ratio(f.sortino_daily)}; "
        f"start equity {NONE if r.start_equity is None else f'{r.start_equity:,.2f}'}; "
        f"open at the end {r.open_positions} (unrealized {_money(r.unrealized)})",
        "by day:",
    ]
    lines += [f"  {d.day}  {_row(d.figures)}" for d in r.by_day]
    lines.append("by symbol:")
    width = max((len(s.symbol) for s in r.by_symbol), default=0)
    lines += [
        f"  {s.symbol:<{width}}  {_row(s.figures)}  Sharpe {_ratio(s.figures.sharpe_daily)}"
        for s in r.by_symbol
    ]
    return "\n".join(lines) + "\n"


def _row(f: Figures) -> str:
    return (
        f"trades {f.trades:>4}  win {_share(f.win_rate):>6}  net {_money(f.net_pnl):>12}  "
        f"drawdown {f.max_drawdown:>10,.2f}  exposure {_share(f.exposure):>6}"
    )


# the compare table: label, how a run's figure reads, and whether B - A is said
_ROWS: tuple[tuple[str, str], ...] = (
    ("cycles", "cycles"),
    ("trades", "trades"),
    ("wins", "wins"),
    ("win rate", "win_rate"),
    ("gross P&L", "gross_pnl"),
    ("commissions", "commissions"),
    ("net P&L", "net_pnl"),
    ("max drawdown", "max_drawdown"),
    ("daily Sharpe", "sharpe_daily"),
    ("daily Sortino", "sortino_daily"),
    ("exposure", "exposure"),
)


def _cell(name: str, x: float | int | None) -> str:
    if x is None:
        return NONE
    if name in ("win_rate", "exposure"):
        return f"{x:.1%}"
    if name in ("sharpe_daily", "sortino_daily"):
        return f"{x:.2f}"
    if isinstance(x, int):
        return str(x)
    return f"{x:,.2f}"


def delta(a: Figures, b: Figures) -> dict[str, float | None]:
    """B - A of each figure (None where either has none)."""
    out: dict[str, float | None] = {}
    for _, name in _ROWS:
        x, y = getattr(a, name), getattr(b, name)
        out[name] = None if x is None or y is None else round(y - x, 4)
    return out


def _diff(name: str, d: float | None) -> str:
    if d is None:
        return ""
    if name in ("win_rate", "exposure"):
        return f"{d * 100:+.1f} pt"
    if name in ("sharpe_daily", "sortino_daily"):
        return f"{d:+.2f}"
    return f"{d:+d}" if isinstance(d, int) else f"{d:+,.2f}"


def compare_text(a: RunResults, b: RunResults, names: Sequence[Path]) -> str:
    """The two runs' figures in columns, B - A beside them; then each symbol's net P&L."""
    heads = ("", "A", "B", "B - A")
    span = [f"{r.days[0]}..{r.days[-1]}" if r.days else "no days" for r in (a, b)]
    rows = [
        ("journal", str(names[0]), str(names[1]), ""),
        ("days", f"{span[0]} ({len(a.days)})", f"{span[1]} ({len(b.days)})", ""),
    ]
    diff = delta(a.run, b.run)
    for label, name in _ROWS:
        x, y = getattr(a.run, name), getattr(b.run, name)
        rows.append((label, _cell(name, x), _cell(name, y), _diff(name, diff[name])))
    symbols = sorted({s.symbol for s in a.by_symbol} | {s.symbol for s in b.by_symbol})
    nets = [{s.symbol: s.figures for s in r.by_symbol} for r in (a, b)]
    for symbol in symbols:
        fa, fb = nets[0].get(symbol), nets[1].get(symbol)
        na, nb = (f.net_pnl if f else 0.0 for f in (fa, fb))
        rows.append(
            (
                f"{symbol} net P&L",
                f"{na:,.2f} ({fa.trades if fa else 0})",
                f"{nb:,.2f} ({fb.trades if fb else 0})",
                f"{nb - na:+,.2f}",
            )
        )
    widths = [max(len(r[i]) for r in (heads, *rows)) for i in range(4)]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in (heads, *rows)
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def compare_json(a: RunResults, b: RunResults, names: Sequence[Path]) -> dict[str, object]:
    """Both runs' results (without their trade lists) and B - A of the run's figures."""

    def part(r: RunResults, name: Path) -> dict[str, object]:
        out = r.as_json()
        out.pop("trades", None)
        return {"journal": str(name), **out}

    return {"a": part(a, names[0]), "b": part(b, names[1]), "delta": delta(a.run, b.run)}
