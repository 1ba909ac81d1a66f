"""Command line: ``python -m tools.gateway_sim --scenario FILE --port 4002``.

The first stdout line is ``gateway_sim listening on 127.0.0.1:PORT`` (port 0 picks a free
one); ``--port-file`` also writes the port. SIGINT/SIGTERM only set a flag the main coroutine
waits on; it then closes the server, writes ``--stats-file`` and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from tools.gateway_sim.scenario import Scenario, ScenarioError, load_scenario
from tools.gateway_sim.server import HOST, start_server

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CANNOT_BIND = 3
DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "default.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.gateway_sim",
                                description="Simulated IB Gateway (TWS API) on 127.0.0.1")
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="scenario YAML file")
    p.add_argument("--port", type=int, default=4002, help="TCP port; 0 picks a free one")
    p.add_argument("--port-file", help="write the bound port to this file")
    p.add_argument("--stats-file", help="JSON stats, written on exit and on every disconnect")
    p.add_argument("--check", action="store_true", help="validate the scenario and exit")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


async def serve(scenario: Scenario, args: argparse.Namespace) -> int:
    try:
        server = await start_server(scenario, args.port, args.stats_file)
    except OSError as exc:
        print(f"gateway_sim: cannot listen on {HOST}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_BIND
    if args.port_file:  # complete (renamed into place) before the stdout announcement
        target = Path(args.port_file)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(f"{server.port}\n")
        tmp.replace(target)
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
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        scenario = load_scenario(args.scenario)
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
