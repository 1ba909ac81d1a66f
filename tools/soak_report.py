"""The soak verdict: read the monitor's metrics JSONL, judge memory and buffers, PASS or FAIL.

    python tools/soak_report.py var/metrics.jsonl [MORE...] [--warmup-s 300]
        [--max-buffer-growth-kb 50] [--max-rss-slope-kb-per-h 1024] [--max-buffer-warnings 0]
        [--min-span-s 600] [--plot soak.png] [--json]

Each file's rotated siblings (``metrics.jsonl.1`` … ``.N``) are read too; records are put in
time order by ``ts``. Malformed lines are skipped, counted and named (file:line) on stderr.
The line schema is documented in ``supervisor/monitor.py``; the buffer naming convention:
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

Exit codes: 0 PASS, 1 FAIL, 2 bad usage (missing file, matplotlib missing for --plot).
Only the standard library is needed (matplotlib for --plot), so the report runs wherever the
metrics files are copied to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the project root holds the supervisor package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.observe.soak import Thresholds, analyse, expand_rotated, load_records  # noqa: E402
from supervisor.observe.soak_render import format_report, plot  # noqa: E402

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
MAX_NAMED_PROBLEMS = 20  # malformed lines named on stderr; the rest are only counted


# ---- command line ----------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics JSONL file(s)")
    defaults = Thresholds()
    parser.add_argument("--warmup-s", type=float, default=defaults.warmup_s)
    parser.add_argument("--max-buffer-growth-kb", type=float,
                        default=defaults.max_buffer_growth_kb)
    parser.add_argument("--max-rss-slope-kb-per-h", type=float,
                        default=defaults.max_rss_slope_kb_per_h)
    parser.add_argument("--max-buffer-warnings", type=int, default=defaults.max_buffer_warnings)
    parser.add_argument("--min-span-s", type=float, default=defaults.min_span_s,
                        help="steady-state seconds a process needs before its slope is judged")
    parser.add_argument("--plot", type=Path, help="write RSS and buffer levels to this PNG")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


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
            print("matplotlib is not installed: pip install -e '.[plot]'", file=sys.stderr)
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
        print(f"skipped {len(problems) - MAX_NAMED_PROBLEMS} more malformed line(s)",
              file=sys.stderr)
    thresholds = Thresholds(args.warmup_s, args.max_buffer_growth_kb,
                            args.max_rss_slope_kb_per_h, args.max_buffer_warnings,
                            args.min_span_s)
    report = analyse(records, thresholds, [str(p) for p in paths], len(problems))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    if args.plot is not None:
        try:
            plot(records, args.plot, thresholds.warmup_s)
        except OSError as exc:
            print(f"soak_report: cannot write the plot {args.plot}: {exc.strerror}",
                  file=sys.stderr)
            return EXIT_USAGE
    return EXIT_PASS if report.passed else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
