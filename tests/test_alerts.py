"""Alerts against a loopback HTTP server: formats, heartbeat, retries, drops, no blocking, no
secrets in the log."""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.config import AlertsSettings
from supervisor.observe.alerts import Alerter

pytestmark = pytest.mark.timeout(60)

WAIT_S = 20.0  # how long a test waits for the alerts thread; a ceiling, never asserted on


@dataclass
class Received:
    method: str
    path: str
    body: dict | None
    user_agent: str


@dataclass
class LoopbackServer:
    url: str
    received: queue.Queue = field(default_factory=queue.Queue)
    statuses: list[int] = field(default_factory=list)  # answered in turn, then 200
    hold: threading.Event | None = None  # when set up, handlers wait for it
    entered: threading.Event = field(default_factory=threading.Event)

    def next(self) -> Received:
        return self.received.get(timeout=WAIT_S)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    state = LoopbackServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            state.entered.set()
            if state.hold is not None:
                state.hold.wait(WAIT_S)
            state.received.put(
                Received(
                    self.command,
                    self.path,
                    json.loads(raw) if raw else None,
                    self.headers.get("User-Agent", ""),
                )
            )
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: object) -> None:
            return  # the test asserts on requests, not on the server's access log

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    if state.hold is not None:
        state.hold.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dead_url() -> str:
    """A loopback port with nothing listening: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def alerters() -> Iterator[Callable[..., Alerter]]:
    made: list[Alerter] = []

    def make(**settings) -> Alerter:
        alerter = Alerter(
            AlertsSettings(**settings), backoff_s=0.01, wall_clock=lambda: 1_767_886_200.5
        )
        made.append(alerter)
        return alerter

    yield make
    for alerter in made:
        alerter.stop(timeout_s=1)


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the alerts thread never got there"
        time.sleep(0.01)


def test_each_channel_format_arrives_as_specified(server, alerters):
    alerter = alerters(
        discord_webhook=f"{server.url}/discord/T1",
        slack_webhook=f"{server.url}/slack/T2",
        telegram_bot_token="123:T3",
        telegram_chat_id="-42",
        telegram_api=server.url,
        webhook_url=f"{server.url}/hook/T4",
    )
    alerter.start()

    assert alerter.send("kill_switch", "trading halted") == 4
    got = {r.path: r for r in (server.next() for _ in range(4))}

    assert set(got) == {"/discord/T1", "/slack/T2", "/bot123:T3/sendMessage", "/hook/T4"}
    assert all(r.method == "POST" for r in got.values())
    assert got["/discord/T1"].body == {"content": "trading halted"}
    assert got["/slack/T2"].body == {"text": "trading halted"}
    assert got["/bot123:T3/sendMessage"].body == {"chat_id": "-42", "text": "trading halted"}
    assert got["/hook/T4"].body == {
        "kind": "kill_switch",
        "text": "trading halted",
        "fields": {},
        "ts": 1_767_886_200.5,
    }
    assert "Python-urllib" not in got["/discord/T1"].user_agent
    wait_until(lambda: alerter.stats()["sent"] == 4)


def test_fields_go_into_the_webhook_json_and_the_chat_text(server, alerters):
    alerter = alerters(discord_webhook=f"{server.url}/d", webhook_url=f"{server.url}/w")
    alerter.start()

    alerter.send("memory", "worker-2 grows", {"process": "worker-2", "mb_per_h": 61.5})
    got = {r.path: r.body for r in (server.next(), server.next())}

    assert got["/d"] == {"content": "worker-2 grows\nprocess: worker-2\nmb_per_h: 61.5"}
    assert got["/w"]["fields"] == {"process": "worker-2", "mb_per_h": 61.5}


def test_heartbeat_is_a_get_and_does_not_pile_up(server, alerters):
    alerter = alerters(heartbeat_url=f"{server.url}/ping/T5")

    assert alerter.heartbeat() is True
    assert alerter.heartbeat() is False  # one is already waiting: no second request
    alerter.start()
    got = server.next()

    assert (got.method, got.path, got.body) == ("GET", "/ping/T5", None)
    wait_until(lambda: alerter.stats()["sent"] == 1)
    assert alerter.heartbeat() is True  # delivered: the next one may go
    assert server.next().path == "/ping/T5"


def test_no_channel_configured_sends_nothing(alerters):
    alerter = alerters()
    assert alerter.channels == []
    assert alerter.send("x", "y") == 0
    assert alerter.heartbeat() is False


def test_telegram_needs_a_chat_id(alerters, caplog):
    alerter = alerters(telegram_bot_token="123:SECRET-T6")
    assert alerter.channels == []
    assert "telegram_chat_id is empty" in caplog.text
    assert "SECRET-T6" not in caplog.text


def test_send_returns_while_the_endpoint_is_still_blocked(server, alerters):
    server.hold = threading.Event()
    alerter = alerters(webhook_url=f"{server.url}/slow", queue_size=2, timeout_s=30)
    alerter.start()

    assert alerter.send("a", "first") == 1
    assert server.entered.wait(WAIT_S)  # the thread is inside the request, held there
    queued = [alerter.send("a", text) for text in ("second", "third", "fourth")]

    assert queued == [1, 1, 0]  # two fit in the queue, the third is dropped
    assert alerter.stats() == {"sent": 0, "failed": 0, "dropped": 1, "retries": 0, "queued": 2}
    assert not server.hold.is_set()  # every send() above returned while the handler waited

    server.hold.set()
    assert [server.next().body["text"] for _ in range(3)] == ["first", "second", "third"]
    wait_until(lambda: alerter.stats()["sent"] == 3)


def test_an_endpoint_slower_than_the_timeout_fails_after_retries(server, alerters):
    server.hold = threading.Event()  # never released while the alerter waits
    alerter = alerters(slack_webhook=f"{server.url}/hang", timeout_s=0.2, retries=1)
    alerter.start()

    assert alerter.send("a", "b") == 1
    wait_until(lambda: alerter.stats()["failed"] == 1)

    assert alerter.stats()["retries"] == 1
    assert alerter.stats()["sent"] == 0


def test_a_dead_endpoint_is_retried_then_counted_failed(dead_url, alerters, caplog):
    alerter = alerters(discord_webhook=f"{dead_url}/api/webhooks/1/T7", retries=2)
    alerter.start()

    assert alerter.send("a", "b") == 1
    wait_until(lambda: alerter.stats()["failed"] == 1)

    assert alerter.stats()["retries"] == 2
    assert "alert via discord failed after 3 attempt(s)" in caplog.text


def test_server_errors_are_retried_client_errors_are_not(server, alerters):
    server.statuses = [503, 500]
    alerter = alerters(webhook_url=f"{server.url}/flaky", retries=2)
    alerter.start()

    alerter.send("a", "b")
    wait_until(lambda: alerter.stats()["sent"] == 1)
    assert alerter.stats()["retries"] == 2

    server.statuses = [400]
    alerter.send("a", "b")
    wait_until(lambda: alerter.stats()["failed"] == 1)
    assert alerter.stats()["retries"] == 2  # a 400 will not get better by asking again


def test_a_full_queue_drops_and_counts_without_blocking(alerters):
    alerter = alerters(webhook_url="http://127.0.0.1:9/never", queue_size=1)

    assert [alerter.send("a", str(i)) for i in range(3)] == [1, 0, 0]
    assert alerter.stats()["dropped"] == 2

    alerter.stop(timeout_s=1)  # never started: the queued alert is abandoned, and counted
    assert alerter.stats()["dropped"] == 3
    assert alerter.send("a", "late") == 0  # stopped alerters drop too
    assert alerter.stats()["dropped"] == 4


def test_stop_drains_what_is_queued(server, alerters):
    alerter = alerters(slack_webhook=f"{server.url}/s")
    for i in range(5):
        alerter.send("a", str(i))
    alerter.start()

    alerter.stop(timeout_s=WAIT_S)

    assert alerter.stats()["sent"] == 5
    assert sorted(server.next().body["text"] for _ in range(5)) == ["0", "1", "2", "3", "4"]


def test_send_once_per_key_and_day(alerters):
    day = [date(2026, 1, 8)]
    alerter = Alerter(AlertsSettings(webhook_url="http://127.0.0.1:9/x"), today=lambda: day[0])

    assert alerter.send_once("kill_switch", "risk", "halted") is True
    assert alerter.send_once("kill_switch", "risk", "halted") is False
    assert alerter.send_once("memory", "monitor", "grows") is True
    day[0] = date(2026, 1, 9)
    assert alerter.send_once("kill_switch", "risk", "halted") is True
    assert alerter.stats()["queued"] == 3
    alerter.stop(timeout_s=0.1)


def test_secrets_never_reach_the_log(server, dead_url, alerters, caplog):
    caplog.set_level(logging.DEBUG)
    server.statuses = [500, 500, 500]
    tokens = ["TOK-DISCORD-1", "TOK-TELEGRAM-2", "TOK-SLACK-3", "TOK-HOOK-4", "TOK-BEAT-5"]
    alerter = alerters(
        discord_webhook=f"{dead_url}/api/webhooks/9/{tokens[0]}",  # connection refused
        telegram_bot_token=f"777:{tokens[1]}",
        telegram_chat_id="1",
        telegram_api=dead_url,
        slack_webhook=f"notascheme://{tokens[2]}",  # urllib quotes the URL in its error
        webhook_url=f"{server.url}/hook/{tokens[3]}",  # HTTP 500, retried
        heartbeat_url=f"{server.url}/beat/{tokens[4]} with spaces",  # an invalid URL
        retries=2,
    )
    alerter.start()

    alerter.send("kill_switch", "halted", {"loss_pct": 3.2})
    alerter.heartbeat()
    alerter.stop(timeout_s=WAIT_S)

    assert alerter.stats()["failed"] == 5
    logged = caplog.text + "".join(str(r.args) + str(r.exc_text) for r in caplog.records)
    for name in ("discord", "telegram", "slack", "webhook", "heartbeat"):
        assert f"alert via {name} failed" in logged
    for token in tokens:
        assert token not in logged
    assert "HTTP 500" in logged
    assert "alert via heartbeat failed after 1 attempt(s): InvalidURL" in logged  # no retry
