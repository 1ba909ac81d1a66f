"""One alert per outage, not per restart (issue 25): the gateway's outage kept in the journal,
so the starts systemd makes during it do not alert it again; its end alerted once."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from supervisor.broker.base import BrokerError
from supervisor.journal.store import Journal
from supervisor.runtime.gateway_wait import GatewayAbsent, GatewayWait
from supervisor.runtime.outages import GATEWAY, OutageAlerts
from supervisor.runtime.waits import wait_for_reconnect
from tests.test_gateway_wait import OK, REFUSED, Alerts, FakeTime, ScriptedBroker, ibkr

pytestmark = pytest.mark.timeout(30)

T0 = 1_780_000_000.0  # wall-clock seconds, pinned


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def start(path: Path, alerts: Alerts, wall: Wall, script: list[Any]) -> Any:
    """One start of the bot: its journal opened, then the gateway waited for (2 s at most)."""
    with Journal(path) as journal:
        outages = OutageAlerts(alerts, journal.outages, wall)  # type: ignore[arg-type]
        time = FakeTime()

        async def main() -> Any:
            waiter = GatewayWait(
                asyncio.Event(),
                ScriptedBroker(script),  # type: ignore[arg-type]
                ibkr(connect_wait_s=2),
                alerts,  # type: ignore[arg-type]
                lambda _: None,
                clock=time.clock,
                sleep=time.sleep,
                rng=random.Random(1),
                outages=outages,
            )
            try:
                return await waiter.connect()
            except BrokerError as exc:
                return exc

        outcome = asyncio.run(main())
        return outcome, outages.ongoing


def test_restarts_during_an_outage_alert_it_once_and_its_end_once(tmp_path: Path) -> None:
    path, alerts, wall = tmp_path / "journal.sqlite", Alerts(), Wall()
    # Given a gateway down for the night: each start waits 2 s, exits 3, and is restarted
    for n in range(4):
        wall.now = T0 + 600 * n
        outcome, ongoing = start(path, alerts, wall, [REFUSED] * 10)
        assert isinstance(outcome, GatewayAbsent) and ongoing  # exit 3, its alert left out
    # Then the outage was alerted once, by the first start
    assert [kind for kind, _ in alerts.sent] == ["connection"]
    assert "waiting for the gateway at 127.0.0.1:4002" in alerts.sent[0][1]
    # When the gateway is back: the start connects, and the end is alerted once
    wall.now = T0 + 3 * 3600
    outcome, ongoing = start(path, alerts, wall, [OK])
    assert outcome is True and not ongoing
    assert [kind for kind, _ in alerts.sent] == ["connection", "connection_back"]
    assert alerts.sent[1][1] == (
        "the gateway at 127.0.0.1:4002 answers again after 3h00m away, "
        "3 restart(s) of the bot during it"
    )
    with Journal(path) as journal:
        assert journal.outages.current(GATEWAY) is None
        (ended,) = journal.outages.since(T0)
        assert (ended.started_ts, ended.ended_ts, ended.restarts) == (T0, T0 + 3 * 3600, 3)
    # and the next outage is a new one: alerted again
    wall.now = T0 + 86_400
    start(path, alerts, wall, [REFUSED] * 10)
    assert [kind for kind, _ in alerts.sent][-1] == "connection" and len(alerts.sent) == 3


def test_a_start_that_connects_says_nothing_of_an_outage_it_never_had(tmp_path: Path) -> None:
    alerts, wall = Alerts(), Wall()
    assert start(tmp_path / "journal.sqlite", alerts, wall, [OK])[0] is True
    assert alerts.sent == []


class Reconnecting:
    """A broker whose connection the test brings back."""

    name = "127.0.0.1:4002"

    def __init__(self) -> None:
        self.connected = False

    def is_connected(self) -> bool:
        return self.connected


def test_a_loss_mid_run_is_an_outage_once_it_lasts_outage_after_s(tmp_path: Path) -> None:
    alerts = Alerts()
    with Journal(tmp_path / "journal.sqlite") as journal:
        outages = OutageAlerts(alerts, journal.outages, Wall())  # type: ignore[arg-type]
        broker = Reconnecting()

        async def main(after_s: float, back_after_s: float) -> None:
            async def reconnect() -> None:
                await asyncio.sleep(back_after_s)
                broker.connected = True

            task = asyncio.ensure_future(reconnect())
            await wait_for_reconnect(
                asyncio.Event(),
                broker,  # type: ignore[arg-type]
                alerts,  # type: ignore[arg-type]
                [],
                ConnectionError("reset by peer"),
                outages,
                after_s,
            )
            await task

        # a short loss (the gateway's nightly restart) is no outage: nothing alerted
        asyncio.run(main(after_s=30.0, back_after_s=0.1))
        assert alerts.sent == [] and journal.outages.current(GATEWAY) is None
        # one that lasts outage_after_s is: alerted once, and its end once
        broker.connected = False
        asyncio.run(main(after_s=0.0, back_after_s=1.5))
    assert [kind for kind, _ in alerts.sent] == ["connection", "connection_back"]
    assert "connection to the gateway lost" in alerts.sent[0][1]
    assert "reset by peer" in alerts.sent[0][1]


@pytest.mark.parametrize("ongoing, alerted", [(True, []), (False, ["exit"])])
def test_exit_3_inside_an_alerted_outage_is_not_alerted_again(
    tmp_path: Path, ongoing: bool, alerted: list[str]
) -> None:
    from supervisor import exitcodes
    from supervisor.broker.stub import StubBroker
    from supervisor.runtime.clock import SimClock
    from supervisor.runtime.loop import Supervisor
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    clock = SimClock(settings.stub.start.timestamp())
    sup = Supervisor(settings, StubBroker(settings.stub, clock.now), clock, lambda _: None)
    alerts = Alerts()
    sup.alerter = alerts  # type: ignore[assignment]
    sup.outages = OutageAlerts(alerts, None)  # type: ignore[arg-type]
    sup.outages.ongoing = ongoing
    sup.exit_code = exitcodes.CANNOT_CONNECT
    sup._say_stopped()
    assert [kind for kind, _ in alerts.sent] == alerted


# Friday 2026-12-04, a weekly expiry: exits from 15:45 (exit_before_expiry_min 15), close 16:00
CLOSE = 1_796_418_000.0
EXIT_AT = CLOSE - 15 * 60


def test_positions_expiring_today_near_their_exit_window_make_a_loss_urgent() -> None:
    from supervisor.runtime.outages import at_stake
    from supervisor.trading.expiry_guard import Held

    today = Held("SPY 20261204 680C", EXIT_AT, CLOSE)
    next_week = Held("QQQ 20261211 600P", EXIT_AT + 7 * 86_400, CLOSE + 7 * 86_400)
    assert at_stake([today, next_week], EXIT_AT - 300, 120) is None  # 15:40: time enough
    for now in (EXIT_AT - 120, EXIT_AT + 60, CLOSE - 120):  # 15:43, 15:46, 15:58
        assert at_stake([today, next_week], now, 120) == (
            "positions expiring today inside their exit window (SPY 20261204 680C)"
        )
    assert at_stake([today], CLOSE, 120) is None  # closed: the exits are over
    assert at_stake([next_week], CLOSE - 120, 120) is None


class Guard:
    """An expiry guard holding the given positions."""

    def __init__(self, held: list[Any]) -> None:
        self.held_now = held

    async def held(self, now_ts: float) -> list[Any]:
        return self.held_now


def test_a_loss_at_1558_with_positions_expiring_today_is_alerted_at_once(tmp_path: Path) -> None:
    from supervisor.runtime.outages import exits_at_stake
    from supervisor.trading.expiry_guard import Held

    alerts = Alerts()
    with Journal(tmp_path / "journal.sqlite") as journal:
        outages = OutageAlerts(alerts, journal.outages, Wall())  # type: ignore[arg-type]
        broker = Reconnecting()
        held = [Held("SPY 20261204 680C", EXIT_AT, CLOSE)]

        async def main(now: float) -> None:
            async def reconnect() -> None:
                await asyncio.sleep(0.2)
                broker.connected = True

            task = asyncio.ensure_future(reconnect())
            urgent = await exits_at_stake(Guard(held), lambda: now, 120.0)  # type: ignore[arg-type]
            await wait_for_reconnect(
                asyncio.Event(),
                broker,  # type: ignore[arg-type]
                alerts,  # type: ignore[arg-type]
                [],
                ConnectionError("reset by peer"),
                outages,
                120.0,
                urgent,
            )
            await task

        # a 0.2 s loss at 15:30 is no outage (outage_after_s 120 s): nothing alerted
        asyncio.run(main(EXIT_AT - 900))
        assert alerts.sent == []
        # the same loss at 15:58, inside the exit window: alerted at once, saying why
        broker.connected = False
        asyncio.run(main(CLOSE - 120))
    assert [kind for kind, _ in alerts.sent] == ["connection", "connection_back"]
    assert (
        "alerted at once: positions expiring today inside their exit window "
        "(SPY 20261204 680C)" in alerts.sent[0][1]
    )
