"""The gateway's liveness, decided on a fake clock (supervisor/broker/ibkr/liveness.py), and
the reconnect policy's timing for a gateway that accepts sockets but does not answer
(supervisor/broker/retry.py, supervisor/broker/ibkr/upkeep.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from types import SimpleNamespace

import pytest

from common.config import IBKRSettings
from supervisor.broker.base import GatewayUnavailable
from supervisor.broker.ibkr.link import Link
from supervisor.broker.ibkr.liveness import LinkWatch, LivenessPolicy
from supervisor.broker.ibkr.pacing import PacingGovernor
from supervisor.broker.ibkr.requests import Requests
from supervisor.broker.ibkr.upkeep import ClientIdsInUse, reconnect_loop
from supervisor.broker.retry import Backoff, CircuitBreaker

pytestmark = pytest.mark.timeout(10)

POLICY = LivenessPolicy(quiet_s=2.0, timeout_s=5.0, max_unanswered=20, idle_s=10.0)


def watch(now: float = 100.0) -> LinkWatch:
    return LinkWatch(POLICY, now, sent_total=8)  # the connect's own messages, answered


def test_a_gateway_that_answers_is_never_probed_while_busy() -> None:
    # Given requests written and answered within the quiet time, again and again
    w = watch()
    for i in range(50):
        now = 100.0 + i * 0.5
        w.counted(now, 8 + (i + 1) * 10)
        assert not w.holding(now) and w.probe_due(now) is None
        w.heard(now + 0.2)
    # Then nothing is due, and nothing is silent
    assert not w.silent(125.0) and w.unanswered() == 0


def test_writes_unanswered_for_the_quiet_time_hold_writes_and_ask_for_a_probe() -> None:
    w = watch()
    w.counted(101.0, 9)  # one request, nothing heard since
    assert w.probe_due(102.9) is None and not w.holding(102.9)
    assert w.probe_due(103.0) == "no answer for 2.0 s"
    assert w.holding(103.0)
    # When the probe goes out, writes keep waiting for its answer
    w.probe_sent(103.1)
    assert w.holding(103.2) and w.probe_due(103.2) is None  # one probe at a time
    # And any byte from the gateway answers it: writes go on, nothing is due
    w.heard(103.15)
    assert not w.holding(103.2) and w.probe_due(103.2) is None and w.probe_at is None


def test_too_many_messages_unanswered_hold_writes_at_once() -> None:
    # Given a burst of requests the gateway has not answered a byte of (a few ms in)
    w = watch()
    w.counted(100.01, 8 + 19)
    assert not w.holding(100.01)
    w.counted(100.02, 8 + 20)
    # Then the twentieth stops the writes: a gateway that wakes up later finds at most
    # those twenty (and the probe) queued, under its 50 a second
    assert w.holding(100.02) and w.probe_due(100.02) == "20 messages unanswered"


def test_a_probe_unanswered_for_the_timeout_means_the_gateway_is_silent() -> None:
    w = watch()
    w.counted(101.0, 10)
    w.probe_sent(103.0)
    assert not w.silent(107.99)
    assert w.silent(108.0)
    assert w.silent_s(108.0) == pytest.approx(8.0)  # since the connect's answer at 100
    assert w.unanswered() == 2


def test_an_idle_link_is_probed_now_and_then_without_holding_writes() -> None:
    w = watch()
    assert w.probe_due(109.9) is None
    assert w.probe_due(110.0) == "idle"
    assert not w.holding(110.0)  # a request now is not held for an idle probe ...
    w.probe_sent(110.0)
    assert w.holding(110.1)  # ... but once the probe is out, writes wait for its answer
    w.heard(110.05)
    assert w.probe_due(115.0) is None and w.probe_due(120.05) == "idle"


def test_wake_in_says_when_time_alone_changes_the_decision() -> None:
    w = watch()
    assert w.wake_in(100.0) == pytest.approx(10.0)  # idle
    w.counted(101.0, 9)
    assert w.wake_in(101.5) == pytest.approx(1.5)  # quiet since 101
    w.probe_sent(103.0)
    assert w.wake_in(104.0) == pytest.approx(4.0)  # the probe's timeout
    assert w.wake_in(109.0) == 0.0


def test_a_count_that_goes_back_is_not_a_write() -> None:
    # the library resets its count on a new socket; a watch belongs to one socket, but a
    # stale reading must not make writes appear or vanish
    w = watch()
    w.counted(101.0, 12)
    w.counted(101.5, 3)
    assert w.unanswered() == 4 and w.written_at == 101.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_circuit_cooldown_counts_from_the_failed_attempts_start() -> None:
    # Given a gateway that accepts the socket and never answers: each attempt takes the
    # connect timeout (10 s) before it fails
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown_s=10.0, clock=clock)
    clock.t = 10.0
    breaker.failure(started_at=0.0)
    # Then the attempt has served the cooldown: the next probe may go at once
    assert breaker.allow() and breaker.remaining_s() == 0.0
    # while a refused connect (failing at once) still waits the whole cooldown
    clock.t = 10.5
    breaker.failure(started_at=10.4)
    assert not breaker.allow() and breaker.remaining_s() == pytest.approx(9.9)
    clock.t = 11.0
    breaker.failure()  # no start given: from now
    assert breaker.remaining_s() == pytest.approx(10.0)


# --- the reconnect loop against a silent gateway, on a fake clock --------------------------------


class SilentGatewayLink:
    """What reconnect_loop uses of a Link. Each connect waits out the connect timeout (the
    gateway accepts the socket, never answers) until the gateway wakes up at ``wakes_at``;
    ``in_use`` attempts after that first answer 326 (it still holds the dead socket's id)."""

    def __init__(self, clock: FakeClock, wakes_at: float, in_use: int = 0) -> None:
        self.clock, self.wakes_at, self.in_use = clock, wakes_at, in_use
        self.cfg = SimpleNamespace(reconnect_same_client_id_s=120.0, circuit_cooldown_s=10.0)
        self.breaker = CircuitBreaker(failures=5, cooldown_s=10.0, clock=clock)
        self.backoff = Backoff(1.0, 5.0, 0.0)
        self.reconnecting = True
        self.client_id = 1
        self.counts: Counter[str] = Counter()
        self.attempts: list[float] = []
        self.connected_at: float | None = None

    def where(self) -> str:
        return "127.0.0.1:4002"

    async def connect_any_client_id(self, only: int | None) -> None:
        start = self.clock.t
        self.attempts.append(start)
        if start + CONNECT_TIMEOUT_S < self.wakes_at:
            self.clock.t += CONNECT_TIMEOUT_S
            raise GatewayUnavailable("did not finish the API handshake within 10s")
        self.clock.t = max(start, self.wakes_at)  # an attempt waiting is answered at once
        if self.in_use:
            self.in_use -= 1
            self.clock.t += 0.1
            raise ClientIdsInUse("client ids 1..1 are all in use (error 326)")

    def reconnected(self, failed_attempts: int) -> None:
        self.reconnecting = False
        self.connected_at = self.clock.t


CONNECT_TIMEOUT_S = 10.0


def run_reconnect(link: SilentGatewayLink) -> list[float]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        link.clock.t += seconds

    asyncio.run(reconnect_loop(link, clock=link.clock, sleep=sleep))  # type: ignore[arg-type]
    return sleeps


@pytest.mark.parametrize("wakes_at", [37.0, 90.0, 93.3, 300.0])
def test_a_gateway_waking_up_finds_a_reconnect_attempt_waiting(wakes_at: float) -> None:
    # Given a gateway silent since 0 that accepts sockets and never answers until it wakes
    clock = FakeClock()
    link = SilentGatewayLink(clock, wakes_at)
    sleeps = run_reconnect(link)
    # Then after the first backoff no attempt waits more: each one served its wait itself
    # (the circuit opens after 5 but its cooldown counts from the attempt's start) ...
    assert sleeps[0] == 1.0 and all(s == 0.0 for s in sleeps[1:]), sleeps
    # ... so the reconnect lands the moment the gateway answers
    assert link.connected_at == pytest.approx(wakes_at)
    assert link.breaker.opened_total >= (1 if wakes_at > 60 else 0)


def test_a_326_after_the_wake_up_is_asked_again_without_the_circuits_cooldown() -> None:
    # Given a gateway that wakes up at 55 still holding the dead socket's client id twice
    clock = FakeClock()
    link = SilentGatewayLink(clock, wakes_at=55.0, in_use=2)
    sleeps = run_reconnect(link)
    # Then a 326 is an answer, not an unreachable gateway: the circuit (open after five
    # silent attempts) closes, the backoff starts over: the attempt after the 326 that
    # waited for the wake-up goes at once, the next 1 s after the quick one began
    assert sleeps[-2:] == [0.0, 0.9] and link.breaker.state == CircuitBreaker.CLOSED
    assert link.connected_at == pytest.approx(56.1)


def test_a_cancel_waits_like_every_other_write_while_the_link_holds():
    # Given a link whose gateway has left 20 messages unanswered: writes hold for a probe
    # (liveness.py: "a silent gateway is sent at most MAX_UNANSWERED messages and a probe")
    async def scenario() -> list[str]:
        link = Link(IBKRSettings(), PacingGovernor(45, 90))
        link._state = "connected"
        link.ib.isConnected = lambda: True
        link.ib.client.conn.numMsgSent = 28
        now = asyncio.get_running_loop().time()
        link.liveness = LinkWatch(LivenessPolicy(), now, sent_total=8)
        link.liveness.counted(now, 28)
        assert link._holding()
        sent: list[str] = []
        # When a cancel (a timed-out bars request, a snapshot given back) is sent meanwhile
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(Requests(link).paced_send(lambda: sent.append("cancel")), 0.5)
        return sent

    # Then it is held too (it took only the governor's slot, and went into a silent socket)
    assert asyncio.run(scenario()) == []
