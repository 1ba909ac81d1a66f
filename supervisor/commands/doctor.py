"""``doctor``: a gateway checked step by step, one line per check, each failure with its fix.

    probe_socket  (supervisor/broker/ibkr/probes.py)  listening? the TWS API's handshake?
    probe_gateway (same)                              client id, accounts, read-only API,
                                                      clock, per symbol: contract, market
                                                      data, option chain, one option quote
    doctor_checks (pure)                              findings -> ok / warn / fail / skip
    + pacing settings                                 within IBKR's limits?

Exit 0 when nothing fails (warnings allowed), 3 when the gateway cannot be connected to,
6 when it can but a check failed. The market options are ``check``'s: ``--sim`` checks the
simulated gateway, ``--broker ibkr --host/--port`` (the default here) a real one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from common.config import Settings
from supervisor import exitcodes
from supervisor.broker.findings import GatewayFinding, SocketFinding
from supervisor.commands.doctor_checks import (
    Check,
    failed,
    gateway_checks,
    pacing_checks,
)
from supervisor.commands.options import (
    MARKET_ERRORS,
    add_market_options,
    load,
    market_error,
    market_for,
)
from supervisor.runtime.sessions import broker_session

SOCKET_TIMEOUT_S = 5.0  # a gateway answers the handshake within milliseconds
CONNECTION_CHECKS = frozenset({"listening", "API handshake", "client id"})


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    add_market_options(parser, default_broker="ibkr")
    parser.add_argument("--symbol", help="check this symbol only (default: the universe's)")
    parser.add_argument(
        "--verbose", action="store_true", help="also the connection's log lines, on stderr"
    )


async def examine(
    settings: Settings, symbols: Sequence[str], now: Callable[[], float], simulated: bool = False
) -> list[Check]:
    """Probe the gateway at ibkr.host:ibkr.port and judge what was found; ``simulated``: the
    simulator's, whose account is not one to fill in ibkr.account."""
    from supervisor.broker.ibkr.probes import probe_gateway, probe_socket  # loads ib_insync

    cfg = settings.ibkr
    socket: SocketFinding = await probe_socket(
        cfg.host, cfg.port, min(cfg.connect_timeout_s, SOCKET_TIMEOUT_S)
    )
    gateway: GatewayFinding | None = None
    if socket.kind == "api":
        gateway = await probe_gateway(settings, symbols, now)
    account = cfg.account or (None if simulated else "")
    checks = gateway_checks(socket, gateway, account, cfg.market_data_type, symbols)
    return checks + pacing_checks(settings.pacing)


def verdict(checks: Sequence[Check]) -> int:
    """0: nothing failed; 3: no usable connection; 6: a check on the connection failed."""
    failures = failed(checks)
    if not failures:
        return exitcodes.OK
    if any(c.name in CONNECTION_CHECKS for c in failures):
        return exitcodes.CANNOT_CONNECT
    return exitcodes.CHECKS_FAILED


def cmd_doctor(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL)
    settings = load(args)
    if settings is None:
        return exitcodes.USAGE
    market = market_for(args, settings)
    if market is None:
        return exitcodes.USAGE
    if market == "stub":
        print("doctor checks a gateway: use --sim or --broker ibkr", file=sys.stderr)
        return exitcodes.USAGE
    symbols = [args.symbol.upper()] if args.symbol else list(settings.universe.symbols)
    try:
        with broker_session(
            settings, market, args.scenario, start=args.start, sim_clock=args.sim_clock
        ) as (_unused, clock, used):
            checks = asyncio.run(examine(used, symbols, clock.now, market == "sim"))
    except MARKET_ERRORS as exc:
        return market_error(exc)
    for check in checks:
        print(check.line(), flush=True)
    code = verdict(checks)
    if code != exitcodes.OK:
        print(f"doctor: {len(failed(checks))} failed (exit {code})", file=sys.stderr)
    return code
