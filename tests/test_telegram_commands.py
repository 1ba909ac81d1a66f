"""The Telegram command bot (issue 25): the words as values, the poller against a fake Bot API
on 127.0.0.1 (long polling with an offset, sendMessage), the allow-list, the two-step
/flatten, the controls journaled as from "telegram", and one ``run --sim`` end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from supervisor.journal.store import Journal
from supervisor.observe.http_status import Status, StatusServer
from supervisor.observe.telegram_answers import (
    FLATTEN_ASK,
    FLATTEN_EXPIRED,
    FLATTEN_NONE,
    HELP,
    TEXT_LIMIT,
    ChatMessage,
    Command,
    flatten_step,
    for_another_bot,
    parse,
    pnl_text,
    positions_text,
    report_text,
    updates,
)
from supervisor.runtime.telegram_commands import (
    BotApi,
    DeskAnswers,
    TelegramCommands,
    start_commands,
)
from supervisor.trading.controls import Controls
from tests.conftest import REPO_ROOT, make_settings

pytestmark = pytest.mark.timeout(30)

TOKEN = "123:s3cret-token"
ALLOWED = 42
STRANGER = 666
TRADER = 7  # a user (from.id)


# --- a fake Bot API on 127.0.0.1 ----------------------------------------------------------------


class FakeBotApi:
    """getUpdates (long polling: held until an update at or past the offset, or the timeout;
    offset -1: the latest only; an offset confirms what is before it), sendMessage and getMe
    (the bot is @OurBot)."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.pending: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.polls: list[dict[str, Any]] = []
        self.fail_next = 0  # answer this many getUpdates with HTTP 502
        self.next_id = 100
        self.cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def say(self, chat_id: int, text: str, user: int = TRADER) -> None:
        message = {"message_id": self.next_id, "chat": {"id": chat_id}, "text": text}
        message["from"] = {"id": user, "is_bot": False, "first_name": "T"}
        with self.cond:
            self.pending.append({"update_id": self.next_id, "message": message})
            self.next_id += 1
            self.cond.notify_all()

    def wait_sent(self, count: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.sent) >= count, timeout_s), self.sent
            return list(self.sent)

    def wait_polls(self, count: int, timeout_s: float = 20.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.polls) >= count, timeout_s), self.polls

    def wait_offset(self, offset: int, timeout_s: float = 20.0) -> None:
        """Until a getUpdates confirms everything before ``offset``."""
        with self.cond:
            assert self.cond.wait_for(
                lambda: any(p.get("offset") == offset for p in self.polls), timeout_s
            ), self.polls

    def get_updates(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.cond:
            self.polls.append(body)
            self.cond.notify_all()
            if self.fail_next:
                self.fail_next -= 1
                return 502, {"ok": False, "description": "Bad Gateway"}
            offset = int(body.get("offset", 0))
            if offset == -1:
                return 200, {"ok": True, "result": self.pending[-1:]}
            self.pending = [u for u in self.pending if u["update_id"] >= offset]
            self.cond.wait_for(lambda: bool(self.pending), float(body.get("timeout", 0)))
            return 200, {"ok": True, "result": list(self.pending)}

    def send_message(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.cond:
            self.sent.append(body)
            self.cond.notify_all()
        return 200, {"ok": True, "result": {"message_id": 1}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                method = self.path.rsplit("/", 1)[-1]
                if not self.path.startswith(f"/bot{api.token}/"):
                    code, answer = 401, {"ok": False, "description": "Unauthorized"}
                elif method == "getUpdates":
                    code, answer = api.get_updates(body)
                elif method == "sendMessage":
                    code, answer = api.send_message(body)
                elif method == "getMe":
                    me = {"id": 123, "is_bot": True, "first_name": "Our", "username": "OurBot"}
                    code, answer = 200, {"ok": True, "result": me}
                else:
                    code, answer = 404, {"ok": False, "description": "Not Found"}
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    fake = FakeBotApi()
    yield fake
    fake.close()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The supervisor's loop, on a thread of its own as the poller sees it."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, name="the-loop", daemon=True)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(5)
    running.close()


# --- the words -----------------------------------------------------------------------------------


def test_updates_are_read_and_the_offset_confirms_every_one() -> None:
    result = [
        {"update_id": 7, "message": {"chat": {"id": 42}, "text": "/status"}},
        {"update_id": 9, "edited_message": {"chat": {"id": 42}, "text": "/pause"}},  # not acted
        {"update_id": 8, "message": {"chat": {"id": -100}, "photo": []}},  # no text
        "garbage",
        {"update_id": "x"},
    ]
    assert updates(result) == ([ChatMessage(7, 42, "/status")], 10)
    sent = [{"update_id": 3, "message": {"chat": {"id": -5}, "from": {"id": 7}, "text": "/pnl"}}]
    assert updates(sent) == ([ChatMessage(3, -5, "/pnl", 7)], 4)
    assert updates([]) == ([], None)
    assert updates({"not": "a list"}) == ([], None)


def test_a_command_is_parsed_with_the_bots_name_and_its_argument() -> None:
    assert parse("/pnl") == Command("pnl", "")
    assert parse("  /Flatten@MyBot   CONFIRM ") == Command("flatten", "confirm", "mybot")
    assert parse("/pnl") == Command("pnl", "", "")


def test_a_command_for_another_bot_is_not_ours() -> None:
    assert for_another_bot(Command("flatten", "confirm", "otherbot"), "OurBot")
    assert not for_another_bot(Command("flatten", "confirm", "ourbot"), "OurBot")
    assert not for_another_bot(Command("flatten", "confirm", ""), "OurBot")  # every bot's
    assert parse("hello") is None
    assert parse("/") is None
    assert parse("") is None


def test_flatten_acts_only_on_a_confirmation_within_its_deadline() -> None:
    assert flatten_step("", None, 5.0) == "ask"
    assert flatten_step("", 60.0, 5.0) == "ask"  # a second /flatten asks again
    assert flatten_step("confirm", 60.0, 60.0) == "act"
    assert flatten_step("confirm", 60.0, 60.5) == "expired"
    assert flatten_step("confirm", None, 5.0) == "none"


def _position(**fields: Any) -> dict[str, Any]:
    line = {
        "action": "BUY",
        "quantity": 2,
        "contract": "AAPL 20261204 C 190",
        "status": "open",
        "entry_price": 1.8,
        "mark": 1.954999,
        "pnl": -12.345,
        "take_profit": 2.7,
        "stop_loss": 0.9,
    }
    return {**line, **fields}


def _summary(**fields: Any) -> dict[str, Any]:
    summary = {
        "day": "2026-12-01",
        "cycles": {"count": 3, "unfinished": 0, "symbols_ok": 9, "symbols_failed": 0},
        "signals": {"by_kind": {"BUY": 1, "HOLD": 8}},
        "intents": {"recorded": 1},
        "decisions": {"accepted": 1, "refused": 2, "refused_by_rule": {"duplicate": 2}},
        "orders": [{"mode": "dry_run", "status": "filled", "count": 1}],
        "fills": {"count": 1, "commission": 1.3},
        "positions": {"opened": 1, "open": [_position()], "closed": []},
        "pnl": {"realized": 0.0, "unrealized": -12.345, "total": -12.345},
        "kill_switch": {"halted": False, "reason": ""},
        "alerts": [],
        "broker": None,
    }
    return {**summary, **fields}


def test_positions_and_pnl_are_in_cents_and_signed() -> None:
    text = positions_text(_summary())
    assert "BUY 2 x AAPL 20261204 C 190 (open) entry 1.80 mark 1.95 P&L -12.35" in text
    assert positions_text(_summary(positions={"opened": 0, "open": [], "closed": []})) == (
        "2026-12-01: no open position"
    )
    pnl = pnl_text(_summary())
    assert "total -12.35" in pnl and "realized +0.00" in pnl
    assert "commission 1.30" in pnl
    report = report_text(_summary())
    assert "refused by rule: duplicate 2" in report and "kill switch: off" in report


def test_an_answer_never_exceeds_telegrams_limit() -> None:
    many = [_position(contract=f"SPY 20261204 C {n}") for n in range(200)]
    text = positions_text(_summary(positions={"opened": 200, "open": many, "closed": []}))
    assert len(text) == TEXT_LIMIT and text.endswith("…")


# --- the poller against the fake Bot API --------------------------------------------------------


class Recorded:
    """An answer on the loop that records what it was asked, and where it ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    async def __call__(self, name: str, chat_id: int) -> str:
        self.calls.append((name, chat_id, threading.current_thread().name))
        return f"did {name}"


def _poller(
    api: FakeBotApi,
    loop: asyncio.AbstractEventLoop,
    answer: Callable[..., Any],
    clock: list[float] | None = None,
) -> TelegramCommands:
    now = clock or [1000.0]
    return TelegramCommands(
        BotApi(api.url, TOKEN, timeout_s=5),
        [ALLOWED],
        loop,
        answer,
        poll_s=2,
        monotonic=lambda: now[0],
        backoff_s=0.05,
    )


def _texts(api: FakeBotApi, count: int) -> list[tuple[int, str]]:
    return [(m["chat_id"], m["text"]) for m in api.wait_sent(count)]


def test_only_an_allowed_chat_is_answered_the_rest_counted_and_logged_once(
    api: FakeBotApi, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    answer = Recorded()
    bot = _poller(api, loop, answer)
    caplog.set_level(logging.INFO, "supervisor.runtime.telegram_commands")
    bot.start()
    try:
        api.wait_polls(2)  # the start's drop, then the first long poll
        api.say(STRANGER, "/pause")
        api.say(STRANGER, "/status")
        api.say(ALLOWED, "/status")
        # Then the allowed chat is answered on the loop, the stranger not at all
        assert _texts(api, 1) == [(ALLOWED, "did status")]
        assert answer.calls == [("status", ALLOWED, "the-loop")]
        assert bot.refused == 2
        refusals = [r for r in caplog.records if getattr(r, "event", "") == "telegram_refused"]
        assert len(refusals) == 1 and "666" in refusals[0].getMessage()
        # and the offset confirmed them: a poll asks past the last one, none asks again
        api.wait_offset(103)
        assert max(p.get("offset", 0) for p in api.polls) == 103
    finally:
        bot.stop()
    assert TOKEN not in caplog.text


def test_flatten_needs_a_confirmation_within_60_s(
    api: FakeBotApi, loop: asyncio.AbstractEventLoop
) -> None:
    answer = Recorded()
    clock = [1000.0]
    bot = _poller(api, loop, answer, clock)
    bot.start()
    try:
        api.wait_polls(2)
        api.say(ALLOWED, "/flatten confirm")  # nothing asked: nothing done
        api.say(ALLOWED, "/flatten")
        assert _texts(api, 2) == [(ALLOWED, FLATTEN_NONE), (ALLOWED, FLATTEN_ASK)]
        assert answer.calls == []
        clock[0] += 61  # a confirmation too late
        api.say(ALLOWED, "/flatten confirm")
        assert _texts(api, 3)[-1] == (ALLOWED, FLATTEN_EXPIRED)
        api.say(ALLOWED, "/flatten")
        api.say(ALLOWED, "/flatten@OurBot confirm")
        assert _texts(api, 5)[-2:] == [(ALLOWED, FLATTEN_ASK), (ALLOWED, "did flatten")]
        assert [c[0] for c in answer.calls] == ["flatten"]
        api.say(ALLOWED, "/flatten confirm")  # a confirmation is used once
        api.say(ALLOWED, "/what")
        sent = _texts(api, 7)
        assert sent[-2] == (ALLOWED, FLATTEN_NONE) and sent[-1][1].startswith("unknown command")
        assert [c[0] for c in answer.calls] == ["flatten"]
    finally:
        bot.stop()


def test_only_allowed_users_are_answered_and_another_bots_commands_are_ignored(
    api: FakeBotApi, loop: asyncio.AbstractEventLoop
) -> None:
    # Given a group chat shared with another bot, and only TRADER allowed in it
    answer = Recorded()
    bot = TelegramCommands(
        BotApi(api.url, TOKEN, timeout_s=5),
        [ALLOWED],
        loop,
        answer,
        poll_s=2,
        allowed_users=[TRADER],
    )
    bot.start()
    try:
        api.wait_polls(2)
        assert bot.username == "ourbot"  # learned with getMe before the first poll
        # When another member pauses, and the trader flattens through the other bot
        api.say(ALLOWED, "/pause", user=STRANGER)
        api.say(ALLOWED, "/flatten@OtherBot")
        api.say(ALLOWED, "/flatten@otherbot confirm")
        api.say(ALLOWED, "/pause@OurBot")
        # Then only the trader's command for us is answered and acted on
        assert _texts(api, 1) == [(ALLOWED, "did pause")]
        api.wait_offset(104)
        assert answer.calls == [("pause", ALLOWED, "the-loop")] and len(api.sent) == 1
        assert bot.refused == 1 and bot.elsewhere == 2
    finally:
        bot.stop()


def test_commands_sent_before_the_start_are_dropped_and_a_failing_api_is_retried(
    api: FakeBotApi, loop: asyncio.AbstractEventLoop
) -> None:
    # Given a /pause sent while the bot was not running, and an API failing once
    api.say(ALLOWED, "/pause")
    api.fail_next = 1
    answer = Recorded()
    bot = _poller(api, loop, answer)
    bot.start()
    try:
        api.wait_polls(3)  # failed, dropped the old one (offset -1), first poll past it
        assert [p.get("offset") for p in api.polls[:3]] == [-1, -1, 101]
        api.say(ALLOWED, "/help")
        assert _texts(api, 1) == [(ALLOWED, HELP)]
        assert answer.calls == []  # the old /pause never acted
    finally:
        bot.stop()


def test_a_wrong_token_is_said_without_the_token(
    api: FakeBotApi, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    bot = TelegramCommands(BotApi(api.url, "999:wrong", 5), [ALLOWED], loop, Recorded(), poll_s=1)
    caplog.set_level(logging.WARNING, "supervisor.runtime.telegram_commands")
    bot.start()
    try:
        deadline = time.monotonic() + 10
        while "HTTP 401" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    finally:
        bot.stop()
    assert "999:wrong" not in caplog.text


# --- the answers on the desk: the controls' path, source "telegram" ------------------------------


class FakeDesk:
    """What Controls and DeskAnswers use of the desk."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.paused = False
        self.state: Any = None
        self.lock = asyncio.Lock()
        self.executor = type("Executor", (), {"mode": "dry_run"})()

    def day_of(self, ts: float) -> str:
        return "2026-12-01"

    def pause(self, paused: bool) -> None:
        self.paused = paused

    async def flatten(self, now_ts: float) -> str:
        assert self.lock.locked()  # taken by Controls, as for the HTTP controls
        return "1 closed"


def test_controls_from_telegram_are_journaled_with_the_chat_as_peer(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], list[tuple[str, str, str]], bool]:
        journal = Journal(tmp_path / "journal.sqlite")
        desk: Any = FakeDesk(journal)
        answers = DeskAnswers(
            desk, Controls(desk, None), lambda: Status(state="trading"), "sim", lambda: 5.0
        )
        said = [await answers("pause", ALLOWED), await answers("status", ALLOWED)]
        said.append(await answers("flatten", ALLOWED))
        rows = journal.day_summary("2026-12-01")["controls"]
        journal.close()
        return said, [(r["action"], r["source"], r["peer"]) for r in rows], desk.paused

    said, rows, paused = asyncio.run(scenario())
    assert said[0] == "pause: paused: new entries refused"
    assert "trading on sim, mode dry_run" in said[1] and "PAUSED" in said[1]
    assert said[2] == "flatten: flattened: 1 closed; paused"
    assert rows == [("pause", "telegram", "42"), ("flatten", "telegram", "42")]
    assert paused


def test_the_hook_starts_only_when_on_and_counts_strangers_on_metrics(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async def scenario() -> tuple[bool, int, bytes]:
        journal = Journal(tmp_path / "journal.sqlite")
        desk: Any = FakeDesk(journal)
        desk.broker = type("Broker", (), {"name": "stub"})()
        controls = Controls(desk, None)
        off = make_settings(tmp_path)
        on = make_settings(
            tmp_path,
            alerts={
                "telegram_api": api.url,
                "telegram_bot_token": TOKEN,
                "telegram_commands": True,
                "telegram_allowed_chats": [ALLOWED],
            },
        )
        server = StatusServer(0)
        none = start_commands(off, server, desk, controls, Status, lambda: 5.0) is None
        commands = start_commands(on, server, desk, controls, Status, lambda: 5.0)
        assert commands is not None
        try:
            await asyncio.to_thread(api.wait_polls, 2)
            api.say(STRANGER, "/status")
            api.say(STRANGER, "/pnl")
            while commands.refused < 2:
                await asyncio.sleep(0.02)
        finally:
            commands.stop()
            journal.close()
        return none, len(api.sent), server.metrics()

    off_is_none, sent, metrics = asyncio.run(scenario())
    assert off_is_none and sent == 0
    assert b"ibkr_bot_telegram_refused_total 2.0" in metrics


# --- end to end: run --sim with the commands on ---------------------------------------------------


def _query(journal: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return []
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


@pytest.mark.e2e
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_run_sim_answers_only_the_allowed_chat_and_pauses_and_flattens_from_telegram(
    api: FakeBotApi, tmp_path: Path
) -> None:
    (tmp_path / "s.yaml").write_text(
        "alerts:\n"
        f"  telegram_api: {api.url}\n"
        f"  telegram_bot_token: '{TOKEN}'\n"
        "  telegram_commands: true\n"
        f"  telegram_allowed_chats: [{ALLOWED}]\n"
    )
    journal = tmp_path / "var" / "journal-sim.sqlite"
    command = [sys.executable, "-m", "supervisor", "run", "--sim", "--cycles", "0"]
    bot = subprocess.Popen(
        [*command, "--interval", "0.5", "--config", str(tmp_path / "s.yaml")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        api.wait_polls(2, timeout_s=90)  # started: the old commands dropped, polling
        deadline = time.monotonic() + 60  # the pinned session enters AAPL at once
        while not _query(journal, "SELECT 1 FROM positions"):
            assert bot.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        api.say(STRANGER, "/status")
        api.say(ALLOWED, "/status")
        api.say(ALLOWED, "/pause")
        sent = api.wait_sent(2, timeout_s=60)
        assert [m["chat_id"] for m in sent] == [ALLOWED, ALLOWED]  # never the stranger
        assert "mode dry_run" in sent[0]["text"] and "connected: yes" in sent[0]["text"]
        assert sent[1]["text"] == "pause: paused: new entries refused"
        last = _query(journal, "SELECT COALESCE(MAX(id), 0) FROM decisions")[0][0]
        deadline = time.monotonic() + 60
        while not _query(journal, f"SELECT 1 FROM decisions WHERE id > {last}"):
            assert bot.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        assert _query(journal, f"SELECT DISTINCT rule FROM decisions WHERE id > {last}") == [
            ("paused",)
        ]
        # and a confirmed /flatten closes the paper position
        api.say(ALLOWED, "/flatten")
        api.say(ALLOWED, "/flatten confirm")
        sent = api.wait_sent(4, timeout_s=60)
        assert sent[2]["text"] == FLATTEN_ASK
        assert sent[3]["text"].startswith("flatten: flattened: 1 paper position(s)")
        assert _query(
            journal, "SELECT COUNT(*) FROM positions WHERE status IN ('pending', 'open')"
        ) == [(0,)]
        assert _query(journal, "SELECT action, source, peer FROM controls ORDER BY id") == [
            ("pause", "telegram", "42"),
            ("flatten", "telegram", "42"),
        ]
    finally:
        stopping = time.monotonic()
        bot.send_signal(signal.SIGTERM)
        bot.wait(timeout=60)
    # a long poll under way (the fake holds it 25 s) does not hold the stop
    assert time.monotonic() - stopping < 20
    assert bot.returncode == 0
