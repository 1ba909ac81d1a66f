"""Command line: ``python -m tools.gateway_sim --scenario FILE --port 4002``.

The first stdout line is ``gateway_sim listening on 127.0.0.1:PORT`` (port 0 picks a free
one); ``--port-file`` also writes the port, ``--clock-file`` the session clock (JSON: start,
rate and monotonic origin) so a client process can follow the sim's time exactly; both files
are complete before the announcement. ``--start``, ``--rate`` and ``--market-step-s``
override the scenario's ``clock`` (``--start wall``: follow the wall clock). SIGINT/SIGTERM
only set a flag the main coroutine waits on; it then closes the server, writes
``--stats-file`` and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from common.locations import DEFAULT_SCENARIO
from tools.gateway_sim.scenario import (
    ClockSpec,
    Scenario,
    ScenarioError,
    describe_errors,
    load_scenario,
)
from tools.gateway_sim.server import HOST, start_server

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CANNOT_BIND = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tools.gateway_sim",
        description="Simulated IB Gateway (TWS API) on 127.0.0.1",
    )
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="scenario YAML file")
    p.add_argument("--port", type=int, default=4002, help="TCP port; 0 picks a free one")
    p.add_argument("--port-file", help="write the bound port to this file")
    p.add_argument("--stats-file", help="JSON stats, written on exit and on every disconnect")
    p.add_argument(
        "--order-log",
        help="append one JSON line per order received (what-ifs aside) to this file, as it arrives",
    )
    p.add_argument(
        "--state-file",
        help="keep the account's orders, today's executions, "
        "positions and cash in this JSON file across restarts (written on every "
        "order event, loaded at start)",
    )
    p.add_argument("--clock-file", help="write the session clock (JSON) to this file")
    p.add_argument(
        "--start",
        help="pin the session at this ISO instant with a UTC offset "
        "(or 'wall' to follow the wall clock); default: the scenario's clock.start",
    )
    p.add_argument("--rate", type=float, help="sim seconds per real second (default: scenario)")
    p.add_argument(
        "--market-step-s",
        type=float,
        help="prices move in whole steps of this many sim seconds (default: scenario)",
    )
    p.add_argument("--check", action="store_true", help="validate the scenario and exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def _write_atomically(path: str, text: str) -> None:
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.replace(target)


def with_clock(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """The scenario with the command line's clock overrides, validated like the file."""
    clock = scenario.clock.model_dump()
    if args.start is not None:
        clock["start"] = None if args.start == "wall" else args.start
        if args.start == "wall":
            clock["rate"] = 1.0
    if args.rate is not None:
        clock["rate"] = args.rate
    if args.market_step_s is not None:
        clock["market_step_s"] = args.market_step_s
    try:
        spec = ClockSpec.model_validate(clock)
    except ValidationError as exc:
        raise ScenarioError(f"clock options: {describe_errors(exc)}") from None
    return scenario.model_copy(update={"clock": spec})


async def serve(scenario: Scenario, args: argparse.Namespace) -> int:
    try:
        server = await start_server(
            scenario, args.port, args.stats_file, args.order_log, args.state_file
        )
    except OSError as exc:
        print(f"gateway_sim: cannot listen on {HOST}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_BIND
    # complete (renamed into place) before the port file, which completes before stdout
    if args.clock_file:
        _write_atomically(args.clock_file, json.dumps(server.time.describe()) + "\n")
    if args.port_file:
        _write_atomically(args.port_file, f"{server.port}\n")
    print(f"gateway_sim listening on {HOST}:{server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("gateway_sim").info("stopping")
    await server.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        scenario = with_clock(load_scenario(args.scenario), args)
    except ScenarioError as exc:
        print(f"gateway_sim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        print(f"scenario {scenario.name!r} ok: {len(scenario.all_symbols())} symbols")
        return EXIT_OK
    if not 0 <= args.port <= 65_535:
        print(f"gateway_sim: bad port {args.port}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(serve(scenario, args))


if __name__ == "__main__":
    sys.exit(main())
