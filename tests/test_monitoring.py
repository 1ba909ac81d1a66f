"""The soak monitor inside the supervisor cannot hurt it: copies taken on the loop, errors in a
sample logged and counted, never raised."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from supervisor.observe.metrics import Monitor
from supervisor.runtime.monitoring import MonitorLoop
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(30)


class FlakyBroker:
    """stats() fails the first time (a dict changing size under a reader, say)."""

    def __init__(self) -> None:
        self.calls = 0

    def stats(self) -> dict[str, float]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("dictionary changed size during iteration")
        return {"live_tickers": 0.0}


def watcher(tmp_path, broker: Any) -> tuple[MonitorLoop, Any]:
    settings = make_settings(tmp_path, monitoring={"interval_s": 0.05})
    pool = SimpleNamespace(
        workers={},
        torn_messages=0,
        respawns=0,
        hangs=0,
        retired=0,
        owed=SimpleNamespace(failures=0),
    )
    service = SimpleNamespace(served=0, failed=0, busy_s=0.0)
    alerter = SimpleNamespace(
        stats=lambda: {"dropped": 0}, send=lambda *a: None, send_once=lambda *a: None
    )
    loop = MonitorLoop(
        settings.monitoring,
        Monitor(settings.monitoring),
        alerter,  # type: ignore[arg-type]
        pool,  # type: ignore[arg-type]
        broker,
        service,  # type: ignore[arg-type]
        lambda: 0,
        lambda: None,
    )
    return loop, settings


def test_a_failing_sample_is_counted_and_the_monitor_goes_on(tmp_path, caplog):
    loop, settings = watcher(tmp_path, FlakyBroker())

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(loop.run(stop))
        while loop.broker.calls < 3:  # type: ignore[attr-defined]
            await asyncio.sleep(0.02)
        stop.set()
        await task  # ends normally: nothing is raised into whoever awaits it

    asyncio.run(main())
    assert loop.errors == 1
    assert "a monitoring sample failed (1 so far)" in caplog.text
    with open(settings.monitoring.metrics_path) as metrics:
        records = [json.loads(line) for line in metrics]
    assert records and records[-1]["buffers"]["monitor_errors_total"] == 1


def test_a_gateway_gone_silent_is_alerted_once_per_silence(tmp_path):
    # Given a broker whose link has given up a silent gateway once
    class Silent:
        silences = 0.0

        def stats(self) -> dict[str, float]:
            return {"gateway_silent_total": self.silences}

    broker = Silent()
    loop, _ = watcher(tmp_path, broker)
    sent: list[tuple[Any, ...]] = []
    loop.alerter.send = lambda *a: sent.append(a)  # type: ignore[assignment, method-assign]
    loop.snapshot()
    assert sent == []
    # When the count goes up, one alert; samples after it, none; a second silence, one more
    broker.silences = 1.0
    loop.snapshot()
    loop.snapshot()
    assert [a[0] for a in sent] == ["gateway_silent"]
    assert "stopped answering" in sent[0][1]
    broker.silences = 2.0
    loop.snapshot()
    assert len(sent) == 2
