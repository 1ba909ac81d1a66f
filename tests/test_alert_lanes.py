"""Alert channels deliver on lanes of their own: a channel that hangs delays only itself, the
heartbeat never waits behind trade alerts, and a full lane drops, counts, and logs once.

A fake transport stands in for HTTP: the hanging channel blocks on an event the test holds,
every other delivery is recorded; the tests wait on events and queues, never on sleeps.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator

import pytest

from common.config import AlertsSettings
from supervisor.observe.alerts import Alerter, Delivery

pytestmark = pytest.mark.timeout(60)

WAIT_S = 20.0  # a ceiling for a wait, never asserted on


class FakeChannels:
    """Deliveries to ``hang`` block until ``release``; the rest land in ``delivered``."""

    def __init__(self, hang: str) -> None:
        self.hang = hang
        self.release = threading.Event()
        self.entered = threading.Event()
        self.delivered: queue.Queue[Delivery] = queue.Queue()

    def __call__(self, delivery: Delivery, timeout_s: float) -> None:
        if delivery.channel == self.hang:
            self.entered.set()
            if not self.release.wait(WAIT_S):
                raise TimeoutError("timed out")
        self.delivered.put(delivery)

    def next(self) -> Delivery:
        return self.delivered.get(timeout=WAIT_S)


@pytest.fixture
def fake() -> Iterator[FakeChannels]:
    channels = FakeChannels(hang="slack")
    yield channels
    channels.release.set()


def make(fake: FakeChannels, **settings: object) -> Alerter:
    return Alerter(AlertsSettings(**settings), backoff_s=0.01, transport=fake)


def test_a_hanging_channel_delays_only_itself(fake):
    alerter = make(
        fake,
        discord_webhook="http://127.0.0.1:9/d",
        slack_webhook="http://127.0.0.1:9/s",
        heartbeat_url="http://127.0.0.1:9/beat",
        timeout_s=5,
        retries=2,
    )
    alerter.start()

    for i in range(3):
        alerter.send("trade", f"trade {i}")
    assert fake.entered.wait(WAIT_S)  # slack is stuck inside its first request
    assert alerter.heartbeat() is True
    got = [fake.next() for _ in range(4)]

    assert not fake.release.is_set()  # all of it arrived while slack still hung
    assert sorted(d.channel for d in got) == ["discord", "discord", "discord", "heartbeat"]
    assert alerter.stats()["sent"] >= 3
    fake.release.set()
    assert [fake.next().channel for _ in range(3)] == ["slack"] * 3
    alerter.stop(timeout_s=WAIT_S)
    assert alerter.stats()["sent"] == 7


def test_the_heartbeat_never_waits_behind_a_full_trade_lane(fake):
    alerter = make(
        fake,
        slack_webhook="http://127.0.0.1:9/s",
        heartbeat_url="http://127.0.0.1:9/beat",
        queue_size=2,
    )
    alerter.start()
    alerter.send("trade", "first")
    assert fake.entered.wait(WAIT_S)
    for i in range(5):
        alerter.send("trade", f"more {i}")  # two wait, three are dropped

    assert alerter.heartbeat() is True
    assert fake.next().channel == "heartbeat"
    assert alerter.dropped_by_channel() == {"slack": 3, "heartbeat": 0}
    # drained here, not by the fixture after the test: a thread left hanging would log its
    # end of drops into the next test's captured log
    fake.release.set()
    alerter.stop(timeout_s=WAIT_S)


def test_a_full_lane_counts_its_drops_and_logs_them_once(fake, caplog):
    caplog.set_level(logging.WARNING, logger="supervisor.observe.alerts")
    alerter = make(fake, slack_webhook="http://127.0.0.1:9/s", queue_size=2)
    alerter.start()
    alerter.send("trade", "first")
    assert fake.entered.wait(WAIT_S)

    queued = [alerter.send("trade", f"more {i}") for i in range(9)]

    assert queued == [1, 1] + [0] * 7
    assert alerter.stats()["dropped"] == 7
    dropping = [r for r in caplog.records if "are being dropped" in r.getMessage()]
    assert len(dropping) == 1  # one line for the run of drops, not one per drop
    fake.release.set()
    assert [fake.next().channel for _ in range(3)] == ["slack"] * 3
    alerter.stop(timeout_s=WAIT_S)
    ended = [r.getMessage() for r in caplog.records if "while the queue was full" in r.getMessage()]
    assert ended == ["alerts via slack: 7 dropped while the queue was full (7 in all)"]
    assert alerter.stats() == {"sent": 3, "failed": 0, "dropped": 7, "retries": 0, "queued": 0}


def test_stop_does_not_wait_on_a_full_lane_after_it_drains(fake):
    fake.hang = "nobody"
    alerter = make(fake, webhook_url="http://127.0.0.1:9/w", queue_size=3)
    for i in range(3):
        alerter.send("trade", str(i))  # full before the thread starts: no room for the stop
    alerter.start()

    stopper = threading.Thread(target=alerter.stop, kwargs={"timeout_s": 2 * WAIT_S})
    stopper.start()
    stopper.join(WAIT_S)

    assert not stopper.is_alive()
    assert alerter.stats()["sent"] == 3


def test_the_final_alert_waits_out_a_slow_delivery_under_way_at_a_stop(fake):
    # Given a channel busy with a slow delivery (answered after ~3 s: slow, not down)
    alerter = make(fake, slack_webhook="http://127.0.0.1:9/s", timeout_s=5, retries=0)
    alerter.start()
    alerter.send("trade", "bought")
    assert fake.entered.wait(WAIT_S)
    threading.Timer(3.0, fake.release.set).start()
    # When the bot stops and says so, with the stop's own default wait
    alerter.send("stop", "bot stopped after 7 cycles (exit 0)")
    alerter.stop()
    # Then the 'stopped' alert got through behind it (a 2 s wait dropped it)
    bodies = [fake.next().body or b"" for _ in range(2)]
    assert b"bought" in bodies[0] and b"bot stopped after 7 cycles" in bodies[1]
