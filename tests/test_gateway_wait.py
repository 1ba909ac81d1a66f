"""Start waits for the gateway (supervisor/runtime/gateway_wait.py): the policy on a fake
clock with a scripted broker (no socket, no wall-clock wait), then a whole supervisor whose
gateway answers on the third probe, and one that must fail at once."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.config import IBKRSettings
from supervisor import exitcodes
from supervisor.broker.base import BrokerError, GatewayUnavailable, NotAGateway
from supervisor.broker.stub import StubBroker
from supervisor.observe.logs import LogService
from supervisor.runtime.clock import SimClock
from supervisor.runtime.gateway_wait import GatewayAbsent, GatewayWait
from supervisor.runtime.loop import Supervisor
from tests.conftest import make_settings

REFUSED = GatewayUnavailable("cannot connect to 127.0.0.1:4002: connection refused")
HANG = "hang"  # the attempt never ends by itself (a gateway that does not answer)
OK = "ok"


class ScriptedBroker:
    """``connect()`` plays its script: an exception to raise, HANG, or OK."""

    name = "ibkr"

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.attempts = 0
        self.hanging = asyncio.Event()  # an attempt that hangs has begun
        self.cancelled = False

    async def connect(self) -> None:
        self.attempts += 1
        step = self.script.pop(0) if self.script else OK
        if step == HANG:
            self.hanging.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        if isinstance(step, BaseException):
            raise step


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, kind: str, text: str, fields: dict[str, Any] | None = None) -> int:
        self.sent.append((kind, text))
        return 1


class FakeTime:
    """Monotonic time that moves only when the wait pauses; ``stop_at`` sets the stop at
    that pause (1-based), as a SIGTERM arriving then would."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []
        self.stop_at = stop_at

    def clock(self) -> float:
        return self.now

    async def sleep(self, stop: asyncio.Event, seconds: float) -> None:
        self.pauses.append(round(seconds, 6))
        if self.stop_at == len(self.pauses):
            stop.set()
            return
        self.now += seconds
        await asyncio.sleep(0)


def ibkr(**values: Any) -> IBKRSettings:
    return IBKRSettings(**{"reconnect_jitter": 0, **values})


def wait_with(
    script: list[Any], cfg: IBKRSettings | None = None, time: FakeTime | None = None
) -> tuple[Any, ScriptedBroker, Alerts, FakeTime, list[str]]:
    """Run one GatewayWait; the outcome (True/False or the exception) and its witnesses."""
    broker, alerts, time = ScriptedBroker(script), Alerts(), time or FakeTime()
    statuses: list[str] = []

    async def main() -> Any:
        waiter = GatewayWait(
            asyncio.Event(),
            broker,  # type: ignore[arg-type]
            cfg or ibkr(),
            alerts,  # type: ignore[arg-type]
            statuses.append,
            clock=time.clock,
            sleep=time.sleep,
            rng=random.Random(1),
        )
        try:
            return await waiter.connect()
        except BrokerError as exc:
            return exc

    return asyncio.run(main()), broker, alerts, time, statuses


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def test_a_gateway_there_at_once_is_no_wait(caplog) -> None:
    caplog.set_level(logging.INFO)
    outcome, broker, alerts, time, statuses = wait_with([OK])
    assert outcome is True and broker.attempts == 1
    assert not time.pauses and not alerts.sent and not statuses and not caplog.records


def test_probes_follow_the_reconnect_policy_until_the_gateway_answers(caplog) -> None:
    caplog.set_level(logging.INFO)
    # Given a gateway that refuses 7 connects (backoff 1 s doubling to 5 s, the circuit open
    # after 5 failures in a row, then a probe every 10 s)
    outcome, broker, alerts, time, statuses = wait_with([REFUSED] * 7 + [OK])
    # Then it waited exactly as a mid-run outage would, and connected on the 8th probe
    assert outcome is True and broker.attempts == 8
    assert time.pauses == [1, 2, 4, 5, 10, 10, 10]
    # said once (a line, an alert, the status), not once per probe
    waiting = events(caplog, "gateway_waiting")
    assert len(waiting) == 1 and waiting[0].levelno == logging.WARNING
    assert "waiting for the gateway at 127.0.0.1:4002 until it answers" in waiting[0].getMessage()
    assert "connection refused" in waiting[0].getMessage()
    assert len(alerts.sent) == 1 and alerts.sent[0][0] == "connection"
    assert "127.0.0.1:4002" in alerts.sent[0][1]
    assert statuses == ["waiting for the gateway at 127.0.0.1:4002"]
    answered = events(caplog, "gateway_answered")
    assert len(answered) == 1 and "after 42s of waiting (8 probes)" in answered[0].getMessage()


def test_a_long_wait_says_how_it_goes_at_growing_intervals_not_per_probe(caplog) -> None:
    caplog.set_level(logging.INFO)
    # Given two hours of refused connects: one probe every 10 s, ~720 of them
    cfg = ibkr()
    outcome, broker, alerts, time, _ = wait_with([REFUSED] * 720 + [OK], cfg)
    assert outcome is True and broker.attempts == 721
    assert time.now - 1000.0 > 7000
    # Then progress came after 1 min, then 2, 4, 8 and every 15 min: a handful of lines
    progress = events(caplog, "gateway_waiting_progress")
    assert 9 <= len(progress) <= 11, [r.getMessage() for r in progress]
    assert "still waiting for the gateway at 127.0.0.1:4002: 1m0" in progress[0].getMessage()
    assert len(alerts.sent) == 1
    assert len(caplog.records) == 1 + len(progress) + 1  # waiting, progress, answered


def test_connect_wait_s_ends_the_wait_with_exit_3_naming_the_address_and_the_setting() -> None:
    # Given connect_wait_s 2 and nothing listening
    outcome, broker, alerts, time, _ = wait_with([REFUSED] * 100, ibkr(connect_wait_s=2))
    # Then the pauses were cut to the 2 s, and the wait ended with both named
    assert isinstance(outcome, GatewayAbsent)
    assert time.pauses == [1, 1] and broker.attempts == 3
    assert "no gateway at 127.0.0.1:4002 after 2s" in str(outcome)
    assert "ibkr.connect_wait_s: 2" in str(outcome) and "connection refused" in str(outcome)


@pytest.mark.parametrize(
    "fatal",
    [
        NotAGateway("127.0.0.1:4002 does not speak the TWS API (it answered b'HTTP/1.1 400')"),
        BrokerError("client ids 1..3 are all in use at 127.0.0.1:4002 (error 326)"),
    ],
)
def test_what_waiting_cannot_fix_fails_at_once(fatal: BrokerError) -> None:
    outcome, broker, _, time, _ = wait_with([fatal])
    assert outcome is fatal and broker.attempts == 1 and not time.pauses
    # ... also once the wait has begun
    outcome, broker, _, time, _ = wait_with([REFUSED, REFUSED, fatal])
    assert outcome is fatal and broker.attempts == 3 and time.pauses == [1, 2]


def test_a_stop_during_a_pause_is_honoured_at_once(caplog) -> None:
    caplog.set_level(logging.INFO)
    outcome, broker, _, time, _ = wait_with([REFUSED] * 10, time=FakeTime(stop_at=3))
    assert outcome is False and broker.attempts == 3 and len(time.pauses) == 3
    assert events(caplog, "stopped_starting")


def test_a_stop_during_a_probe_cancels_it() -> None:
    broker, alerts, time = ScriptedBroker([REFUSED, HANG]), Alerts(), FakeTime()
    stop = asyncio.Event()

    async def main() -> bool:
        waiter = GatewayWait(
            stop,
            broker,  # type: ignore[arg-type]
            ibkr(),
            alerts,  # type: ignore[arg-type]
            lambda _: None,
            clock=time.clock,
            sleep=time.sleep,
        )
        waiting = asyncio.ensure_future(waiter.connect())
        await broker.hanging.wait()  # the second probe hangs, as on a silent gateway
        stop.set()
        return await waiting

    assert asyncio.run(main()) is False
    assert broker.cancelled and broker.attempts == 2


# --- a whole supervisor ------------------------------------------------------------------------


class LateGateway(StubBroker):
    """The stub market behind a gateway that refuses the first ``refusals`` connects; what
    the supervisor's status said at each refusal is kept."""

    def __init__(self, settings: Any, clock: SimClock, refusals: int) -> None:
        super().__init__(settings.stub, clock.now)
        self.refusals = refusals
        self.attempts = 0
        self.supervisor: Supervisor | None = None
        self.states: list[str] = []

    async def connect(self) -> None:
        self.attempts += 1
        if self.supervisor is not None:
            self.states.append(self.supervisor.feed.state())
        if self.attempts <= self.refusals:
            raise GatewayUnavailable("cannot connect to 127.0.0.1:4002: connection refused")
        await super().connect()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        yield server


def said(server: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(server.recv(500).decode())
        except BlockingIOError:
            return messages


def run_supervisor(tmp_path: Path, refusals: int, wait: bool) -> tuple[Supervisor, LateGateway]:
    settings = make_settings(
        tmp_path,
        schedule={"cycles": 1},
        ibkr={"reconnect_initial_s": 0.01, "reconnect_max_s": 0.01, "reconnect_jitter": 0},
    )
    clock = SimClock(settings.stub.start.timestamp())
    broker = LateGateway(settings, clock, refusals)
    logs = LogService(settings.logging, None)
    sup = Supervisor(
        settings, broker, clock, logs.handle, echo=lambda _: None, wait_for_gateway=wait
    )
    broker.supervisor = sup
    try:
        sup.exit_code = asyncio.run(sup.run())
    finally:
        logs.close()
    return sup, broker


@pytest.mark.slow
def test_run_waits_for_a_late_gateway_and_says_so(tmp_path, notify_socket) -> None:
    # Given a gateway that answers only the third connect
    sup, broker = run_supervisor(tmp_path, refusals=2, wait=True)
    # Then the run waited, connected and ran its cycle
    assert sup.exit_code == exitcodes.OK and sup.cycles_done == 1 and broker.attempts == 3
    # the status said "waiting for gateway" meanwhile, and systemd heard it before "trading"
    assert broker.states == ["starting", "waiting for gateway", "waiting for gateway"]
    messages = said(notify_socket)
    assert messages[0] == "READY=1\nSTATUS=waiting for the gateway at 127.0.0.1:4002"
    assert messages[1].startswith("READY=1\nSTATUS=trading (dry_run) on stub")
    assert messages[-1] == "STOPPING=1"
    with open(tmp_path / "bot.jsonl", encoding="utf-8") as f:
        kinds = [json.loads(line).get("event") for line in f]
    assert kinds.count("gateway_waiting") == 1 and kinds.count("gateway_answered") == 1


@pytest.mark.slow
def test_without_waiting_a_missing_gateway_is_exit_3_at_once(tmp_path, notify_socket) -> None:
    # phases, bench: one connect, as check and reconcile
    sup, broker = run_supervisor(tmp_path, refusals=2, wait=False)
    assert sup.exit_code == exitcodes.CANNOT_CONNECT and broker.attempts == 1
    assert said(notify_socket) == ["STOPPING=1"]


class LateIBKR(LateGateway):
    name = "ibkr"  # the live keys' broker check passes: only the keys themselves are judged


@pytest.mark.parametrize(
    ("mode", "cli_live", "account", "said"),
    [
        ("dry_run", True, "DU1234567", "--live"),  # --live with a file that is not live
        ("live", False, "DU1234567", "lacks --live"),  # live in the file, no --live
        ("live", True, "", "ibkr.account is empty"),  # live with no account named
    ],
)
def test_live_keys_the_file_and_flags_decide_are_refused_before_workers_or_a_gateway(
    tmp_path, mode, cli_live, account, said
) -> None:
    settings = make_settings(tmp_path, execution={"mode": mode}, ibkr={"account": account})
    clock = SimClock(settings.stub.start.timestamp())
    broker = LateIBKR(settings, clock, refusals=10**6)  # a gateway that never answers
    logs = LogService(settings.logging, None)
    sup = Supervisor(settings, broker, clock, logs.handle, echo=lambda _: None, cli_live=cli_live)
    try:
        code = asyncio.run(sup.run())
    finally:
        logs.close()
    logged = (tmp_path / "bot.jsonl").read_text(encoding="utf-8")
    assert code == exitcodes.USAGE  # as the refusal after connecting always was
    assert broker.attempts == 0 and not sup.pool.workers  # no connect, no worker
    assert said in logged and "live trading refused" in logged


def test_the_account_is_still_checked_against_the_connected_one(tmp_path) -> None:
    settings = make_settings(tmp_path, execution={"mode": "live"}, ibkr={"account": "DU1234567"})
    clock = SimClock(settings.stub.start.timestamp())
    broker = LateIBKR(settings, clock, refusals=0)  # manages the stub's account only
    logs = LogService(settings.logging, None)
    sup = Supervisor(settings, broker, clock, logs.handle, echo=lambda _: None, cli_live=True)
    try:
        code = asyncio.run(sup.run())
    finally:
        logs.close()
    logged = (tmp_path / "bot.jsonl").read_text(encoding="utf-8")
    assert code == exitcodes.USAGE and broker.attempts == 1 and sup.cycles_done == 0
    assert "is not the connected account" in logged
