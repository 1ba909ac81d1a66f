"""The soak verdict: read the monitor's metrics JSONL, judge memory and buffers, PASS or FAIL.

    python tools/soak_report.py var/metrics.jsonl [MORE...] [--warmup-s 300]
        [--max-buffer-growth-kb 50] [--max-rss-slope-kb-per-h 1024] [--max-buffer-warnings 0]
        [--min-span-s 600] [--max-rss-growth-kb 16384] [--plot soak.png] [--json]

Each file's rotated siblings (``metrics.jsonl.1`` … ``.N``) are read too; records are put in
time order by ``ts``. Malformed lines are skipped, counted and named (file:line) on stderr.
The line schema is documented in ``supervisor/observe/metrics.py``; the buffer naming convention:
``errors.<code>`` / ``warnings.<code>`` and names ending ``_total`` are cumulative counters
(reported as run totals, a drop means the process restarted); every other buffer is a level,
and a level ending ``_bytes`` is a buffer size judged against ``--max-buffer-growth-kb``.

Checks (the original report's Phase 3 criteria, every threshold a flag):
- memory: each process's RSS slope after its warm-up (least squares, KB/hour) at most
  ``--max-rss-slope-kb-per-h``. Warm-up counts from each process's first sample (a respawned
  worker or a restarted supervisor warms up again: processes are told apart by name and pid);
  a process seen for less than ``--min-span-s`` after warm-up is reported but not judged;
- buffer growth: each ``_bytes`` level's last minus first value after the run's warm-up, in
  KB; other levels (live tickers, pending requests, queue depths) are reported, not judged;
- buffer warnings: the gateway log's "Output exceeded limit" and "EBuffer … has grown" lines;
  skipped (said so) when the gateway log was not watched.
No steady-state data at all is a FAIL: a soak that measured nothing proved nothing.

A soak stopped before its planned length (or killed: its end never recorded) is INCOMPLETE;
a threshold not given on the command line is the one written into the file by ``phases``
(so both give the same verdict on the same file), else the default.

Exit codes: 0 PASS, 1 FAIL or INCOMPLETE, 2 bad usage (missing file, matplotlib missing for --plot).
Only the standard library is needed (matplotlib for --plot), so the report runs wherever the
metrics files are copied to.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the project root holds the supervisor package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.observe.soak import Thresholds, analyse, expand_rotated, load_records  # noqa: E402
from supervisor.observe.soak_render import format_report, plot  # noqa: E402
from supervisor.observe.soak_run import recorded_thresholds  # noqa: E402

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
MAX_NAMED_PROBLEMS = 20  # malformed lines named on stderr; the rest are only counted


# ---- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics JSONL file(s)")
    d = Thresholds()
    # default None: the thresholds written into the metrics file (by phases), else d's
    parser.add_argument("--warmup-s", type=float, help=f"default {d.warmup_s:g}")
    parser.add_argument(
        "--max-buffer-growth-kb", type=float, help=f"default {d.max_buffer_growth_kb:g}"
    )
    parser.add_argument(
        "--max-rss-slope-kb-per-h", type=float, help=f"default {d.max_rss_slope_kb_per_h:g}"
    )
    parser.add_argument(
        "--max-rss-growth-kb",
        type=float,
        help=f"RSS growth allowed after warm-up (default {d.max_rss_growth_kb:g})",
    )
    parser.add_argument("--max-buffer-warnings", type=int, help=f"default {d.max_buffer_warnings}")
    parser.add_argument(
        "--min-span-s",
        type=float,
        help="steady-state seconds a process needs before its slope is judged "
        f"(default {d.min_span_s:g})",
    )
    parser.add_argument("--plot", type=Path, help="write RSS and buffer levels to this PNG")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


FLAGS = (
    "warmup_s",
    "max_buffer_growth_kb",
    "max_rss_slope_kb_per_h",
    "max_rss_growth_kb",
    "max_buffer_warnings",
    "min_span_s",
)


def _thresholds(args: argparse.Namespace, records: list[dict[str, Any]]) -> tuple[Thresholds, str]:
    """The file's recorded thresholds (a verdict already given), else the defaults; any flag
    given overrides either."""
    recorded = recorded_thresholds(records)
    known = {k: v for k, v in (recorded or {}).items() if k in FLAGS}
    given = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    source = "the metrics file (as judged by phases)" if known else "defaults"
    if given:
        source += " + command line"
    return Thresholds(**{**asdict(Thresholds()), **known, **given}), source


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for path in args.metrics:
        if not path.is_file():
            reason = "not a regular file" if path.exists() else "no such file"
            print(f"soak_report: {reason}: {path}", file=sys.stderr)
            return EXIT_USAGE
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: pip install -e .", file=sys.stderr)
            return EXIT_USAGE
    paths = expand_rotated(args.metrics)
    try:
        records, problems = load_records(paths)
    except OSError as exc:
        print(f"soak_report: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for problem in problems[:MAX_NAMED_PROBLEMS]:
        print(f"skipped {problem}", file=sys.stderr)
    if len(problems) > MAX_NAMED_PROBLEMS:
        print(
            f"skipped {len(problems) - MAX_NAMED_PROBLEMS} more malformed line(s)", file=sys.stderr
        )
    thresholds, source = _thresholds(args, records)
    report = analyse(records, thresholds, [str(p) for p in paths], len(problems))
    report.thresholds_from = source
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    if args.plot is not None:
        try:
            plot(records, args.plot, report)
        except OSError as exc:
            print(
                f"soak_report: cannot write the plot {args.plot}: {exc.strerror}", file=sys.stderr
            )
            return EXIT_USAGE
    return EXIT_PASS if report.passed else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
