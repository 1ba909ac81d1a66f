"""Helpers for the gateway simulator tests (imported explicitly; not a pytest conftest).

The simulator runs in its own thread and loop (``ThreadedSim``); each test drives the real
ib_insync client with ``run_client`` in a fresh loop on a worker thread, so neither side
touches the main thread's event-loop policy (other test modules may rely on it).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.ibclient import IB
from tools.gateway_sim import Scenario, scenario_from_dict

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIO = ROOT / "configs" / "scenarios" / "default.yaml"
_client_ids = itertools.count(100)


def next_client_id() -> int:
    return next(_client_ids)


def day_after(at: datetime) -> str:
    """YYYYMMDD of the day after ``at`` (make_scenario lists it as a holiday)."""
    return (at.date() + timedelta(days=1)).strftime("%Y%m%d")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_scenario(at: datetime, **overrides: Any) -> Scenario:
    """default.yaml pinned at ``at`` (a moment from tests/sessions.py), with test speed (tiny
    latency), prices moving continuously, the day after ``at`` listed as a holiday, and
    overrides."""
    return scenario_from_dict(scenario_dict(at, **overrides))


def write_scenario(path: Path, at: datetime, **overrides: Any) -> Path:
    """``make_scenario``'s scenario as a file, for a simulator in its own process."""
    path.write_text(yaml.safe_dump(scenario_dict(at, **overrides), sort_keys=False))
    return path


def scenario_dict(at: datetime, **overrides: Any) -> dict[str, Any]:
    base = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    fast = {
        "name": "test",
        "clock": {"start": at.isoformat(), "rate": 1.0, "market_step_s": 0},
        "session": {"holidays": [*base["session"]["holidays"], day_after(at)]},
        "latency": {
            "default_s": 0.0,
            "contract_details_s": 0.0,
            "sec_def_s": 0.0,
            "historical_s": 0.01,
            "market_data_s": 0.0,
            "snapshot_end_s": 0.05,
            "order_s": 0.0,
        },
        "rules": {"client_id_in_use_close_s": 0.1},
        "orders": {"match_interval_s": 0.05},
        "market_data": {"stream_interval_s": 0.2},
    }
    return deep_merge(deep_merge(base, fast), overrides)


def run_client(fn: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 30.0) -> T:
    """Run an async client function in a fresh event loop on a worker thread."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(fn())
        except BaseException as exc:  # re-raised in the test thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="ib-client", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"client coroutine still running after {timeout_s} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


class ErrorLog:
    """Collects (reqId, code, message) from ``ib.errorEvent``; can wait for a code."""

    def __init__(self, ib: IB) -> None:
        self.items: list[tuple[int, int, str]] = []
        self._changed = asyncio.Event()
        ib.errorEvent += self._on_error

    def _on_error(self, req_id: int, code: int, message: str, _contract: Any) -> None:
        self.items.append((req_id, code, message))
        self._changed.set()

    def codes(self) -> list[int]:
        return [code for _r, code, _m in self.items]

    def for_req(self, req_id: int) -> list[int]:
        return [code for r, code, _m in self.items if r == req_id]

    async def wait_code(self, code: int, timeout_s: float = 5.0) -> tuple[int, int, str]:
        async def until() -> tuple[int, int, str]:
            while True:
                for item in self.items:
                    if item[1] == code:
                        return item
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(until(), timeout_s)


async def connect(port: int, client_id: int | None = None, timeout_s: float = 5.0) -> IB:
    ib = IB()
    await ib.connectAsync(
        "127.0.0.1", port, clientId=client_id or next_client_id(), timeout=timeout_s
    )
    return ib
