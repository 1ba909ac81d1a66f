"""Where the market comes from, and one supervisor run with its logging around it.

    stub  -> StubBroker on a SimClock (a seeded session replayed without waiting)
    --sim -> the gateway simulator as a child process on a free loopback port, IBKRBroker
    ibkr  -> IBKRBroker against ibkr.host:ibkr.port (a real IB Gateway / TWS)
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common.config import Settings, parse_settings
from supervisor.app import Supervisor
from supervisor.broker.base import Broker
from supervisor.broker.stub import StubBroker
from supervisor.clock import Clock, SimClock, WallClock
from supervisor.logs import LogService

DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "configs" / "scenarios" / "default.yaml"


class SimStartError(RuntimeError):
    """The gateway simulator child process did not come up."""


def with_values(settings: Settings, changes: dict[str, dict[str, Any]]) -> Settings:
    """Settings with some section values replaced, validated by the same models."""
    raw: dict[str, Any] = settings.model_dump()  # python mode keeps secrets intact
    for section, values in changes.items():
        raw[section] = {**raw[section], **values}
    return parse_settings(raw, "command line", environ={})


@contextlib.contextmanager
def broker_session(settings: Settings, broker: str, scenario: str | None = None,
                   sim_dir: Path | None = None) -> Iterator[tuple[Broker, Clock, Settings]]:
    """The broker, its clock and the settings it runs with (the sim's port filled in)."""
    if broker == "stub":
        clock = SimClock(settings.stub.start.timestamp())
        yield StubBroker(settings.stub, clock.now), clock, settings
        return
    from supervisor.broker.ibkr import IBKRBroker  # ib_insync is loaded only when needed

    if broker == "sim":
        from supervisor.simproc import SimProcess

        stats = (sim_dir or Path("var")) / "gateway_sim_stats.json"
        stats.parent.mkdir(parents=True, exist_ok=True)
        try:
            sim_cm = SimProcess(scenario or str(DEFAULT_SCENARIO), stats)
            sim = sim_cm.__enter__()
        except (OSError, RuntimeError, TimeoutError) as exc:
            raise SimStartError(str(exc)) from None
        try:
            settings = with_values(settings, {"ibkr": {"host": "127.0.0.1", "port": sim.port}})
            yield IBKRBroker(settings), WallClock(), settings
        finally:
            sim_cm.__exit__(None, None, None)
        return
    yield IBKRBroker(settings), WallClock(), settings


def run_supervisor(settings: Settings, broker: Broker, clock: Clock, *,
                   echo: Callable[[str], None], cli_live: bool = False,
                   console: bool = True) -> tuple[int, Supervisor]:
    """One supervisor run with its log listener; returns the exit code and the supervisor."""
    log_queue = multiprocessing.get_context("spawn").Queue()
    logs = LogService(settings.logging, log_queue, sys.stderr if console else None)
    supervisor = Supervisor(settings, broker, clock, log_queue, cli_live=cli_live, echo=echo)
    try:
        code = asyncio.run(supervisor.run())
    finally:
        logs.close()
    return code, supervisor
