"""The Telegram command bot: /status, /positions, /pnl, /report, /pause, /resume, /flatten
from a phone (``alerts.telegram_commands``, off by default).

    "telegram-commands" thread --getUpdates (long polling, offset)--> alerts.telegram_api
        a chat not in alerts.telegram_allowed_chats, or (when set) a sender not in
            alerts.telegram_allowed_users: no answer, counted
            (ibkr_bot_telegram_refused_total), logged once per chat or user
        a command addressed to another bot (/flatten@OtherBot, our name from getMe at the
            start): not ours, ignored
        /flatten: asks for "/flatten confirm" within CONFIRM_S real seconds
        --asyncio.run_coroutine_threadsafe--> DeskAnswers on the supervisor's loop:
            /pause /resume /flatten -> Controls.apply (trading/controls.py) as the HTTP
            controls do, source "telegram", peer the chat id: journaled, logged, alerted
            /status /positions /pnl /report -> the words of observe/telegram_answers.py
        --sendMessage--> the chat

The HTTP is blocking urllib on a daemon thread of its own, as the alerts' lanes: a long poll
never holds the loop, and a stop does not wait for one (the thread is left to end with the
process; from the stop on it acts on nothing). Commands sent while the bot was not running
are dropped at the start (getUpdates offset -1): a "/flatten confirm" of yesterday must not
act today. The bot token is in every URL: an error is logged by its kind (HTTP status,
connection refused, timed out), never by urllib's text, and the token is masked all the same.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from common.config import Settings
from supervisor.observe.http_status import Status
from supervisor.observe.telegram_answers import (
    CONFIRM_S,
    CONTROLS,
    FLATTEN_ASK,
    FLATTEN_EXPIRED,
    FLATTEN_NONE,
    HELP,
    READ_ONLY,
    ChatMessage,
    StatusView,
    flatten_step,
    for_another_bot,
    parse,
    pnl_text,
    positions_text,
    report_text,
    status_text,
    unknown_text,
    updates,
)
from supervisor.runtime.controls import ControlServer
from supervisor.trading.controls import Control, Controls
from supervisor.trading.desk import Desk

log = logging.getLogger("supervisor.runtime.telegram_commands")

POLL_S = 25.0  # the long poll: Telegram holds getUpdates this long when nothing comes
WAIT_S = 20.0  # real seconds an answer waits for the loop (a flatten waits for the desk)
MAX_BACKOFF_S = 60.0
ANSWER_BYTES = 1 << 20  # getUpdates returns at most 100 updates: far below this
USER_AGENT = "ibkr-options-bot-commands/0.1"

Answer = Callable[
    [str, int], Coroutine[Any, Any, str]
]  # (command name, chat id) -> the reply, on the loop


class BotApiError(Exception):
    """A Bot API call failed; the message is the reason's kind, never a URL."""


class BotApi:
    """The Bot API methods the commands use, blocking (called on the poller's thread)."""

    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self._base = f"{base_url.rstrip('/')}/bot{token}"
        self._token = token
        self.timeout_s = timeout_s
        self.host = urlsplit(base_url).netloc  # what may be logged of it

    def get_updates(self, offset: int | None, poll_s: float) -> object:
        payload: dict[str, object] = {"timeout": int(poll_s), "allowed_updates": ["message"]}
        if offset is not None:
            payload["offset"] = offset
        return self._call("getUpdates", payload, poll_s + self.timeout_s)

    def get_me(self) -> str:
        """Our bot's username, lower case (a command naming another bot is not ours)."""
        me = self._call("getMe", {}, self.timeout_s)
        name = me.get("username") if isinstance(me, dict) else None
        if not isinstance(name, str) or not name:
            raise BotApiError("getMe: no username in the answer")
        return name.lower()

    def send(self, chat_id: int, text: str) -> None:
        self._call("sendMessage", {"chat_id": chat_id, "text": text}, self.timeout_s)

    def _call(self, method: str, payload: dict[str, object], wait_s: float) -> object:
        request = urllib.request.Request(
            f"{self._base}/{method}",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        try:
            with urllib.request.urlopen(request, timeout=wait_s) as response:
                answer = json.loads(response.read(ANSWER_BYTES))
        except urllib.error.HTTPError as exc:
            raise BotApiError(f"{method}: HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise BotApiError(f"{method}: {_kind(exc.reason)}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise BotApiError(f"{method}: {_kind(exc)}") from None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            said = str(answer.get("description", ""))[:200] if isinstance(answer, dict) else ""
            raise BotApiError(f"{method}: not ok {said}".replace(self._token, "***").strip())
        return answer.get("result")


def _kind(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return f"{type(reason).__name__}: {reason.strerror}"
    return type(reason).__name__ if isinstance(reason, BaseException) else "error"


class TelegramCommands:
    """The poller: its own thread; answers through ``answer`` on the loop."""

    def __init__(
        self,
        api: BotApi,
        allowed: Iterable[int],
        loop: asyncio.AbstractEventLoop,
        answer: Answer,
        poll_s: float = POLL_S,
        wait_s: float = WAIT_S,
        monotonic: Callable[[], float] = time.monotonic,
        backoff_s: float = 2.0,  # after the first failure; doubled per failure up to 60 s
        allowed_users: Iterable[int] = (),  # empty: every member of an allowed chat
    ) -> None:
        self.api = api
        self.allowed = frozenset(allowed)
        self.allowed_users = frozenset(allowed_users)
        self.username: str | None = None  # ours, from getMe before the first poll
        self.loop = loop
        self.answer = answer
        self.poll_s = poll_s
        self.wait_s = wait_s
        self.monotonic = monotonic  # the confirmation's 60 s are a person's, not the market's
        self.backoff_s = backoff_s
        self.refused = 0  # messages from chats (or users) not allowed: never answered
        self.elsewhere = 0  # commands addressed to another bot: not ours, never answered
        self.answered = 0
        self.offset: int | None = None  # None until the commands sent before the start are dropped
        self._refused: set[str] = set()  # "chat 42", "user 7": each logged once
        self._deadlines: dict[int, float] = {}  # chat -> until when a "/flatten confirm" acts
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="telegram-commands", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No command acts from now on; a long poll under way is not waited for."""
        self._stopping.set()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if self.username is None:
                    self.username = self.api.get_me()
                if self.offset is None:
                    self._drop_pending()
                    continue
                result = self.api.get_updates(self.offset, self.poll_s)
            except BotApiError as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:  # a long outage: not a line per try
                    log.warning(
                        "telegram commands: %s (failure %d, retrying)",
                        exc,
                        failures,
                        extra={"event": "telegram_failed"},
                    )
                self._stopping.wait(
                    min(self.backoff_s * 2.0 ** min(failures - 1, 6), MAX_BACKOFF_S)
                )
                continue
            if failures:
                log.info("telegram commands: %s answers again", self.api.host)
                failures = 0
            messages, offset = updates(result)
            self.offset = offset if offset is not None else self.offset
            for message in messages:
                if self._stopping.is_set():
                    return
                self._handle(message)

    def _drop_pending(self) -> None:
        """Commands sent while the bot was not running are confirmed unread: none acts."""
        messages, offset = updates(self.api.get_updates(-1, 0))
        self.offset = offset if offset is not None else 0
        if messages:
            log.info(
                "telegram commands: what was sent before the start is ignored (the latest: %r)",
                messages[-1].text[:40],
                extra={"event": "telegram_dropped"},
            )

    def _handle(self, message: ChatMessage) -> None:
        if message.chat_id not in self.allowed:
            self._refuse(f"chat {message.chat_id}", "alerts.telegram_allowed_chats", message)
            return
        if self.allowed_users and message.user_id not in self.allowed_users:
            self._refuse(f"user {message.user_id}", "alerts.telegram_allowed_users", message)
            return
        command = parse(message.text)
        if command is not None and for_another_bot(command, self.username or ""):
            self.elsewhere += 1  # another bot's, in a group both are in: not a refusal
            return
        text = self.reply(message)
        try:
            self.api.send(message.chat_id, text)
            self.answered += 1
        except BotApiError as exc:
            log.warning("telegram commands: the answer to %d failed: %s", message.chat_id, exc)

    def _refuse(self, who: str, setting: str, message: ChatMessage) -> None:
        self.refused += 1
        if who not in self._refused:
            self._refused.add(who)
            log.warning(
                "telegram commands: %s is not in %s: not answered (said once each; all counted)",
                who,
                setting,
                extra={"event": "telegram_refused", "chat": message.chat_id},
            )

    def reply(self, message: ChatMessage) -> str:
        """The answer to an allowed chat's message (acting first when it is a control)."""
        command = parse(message.text)
        if command is None or command.name in ("help", "start"):
            return HELP
        if command.name not in (*READ_ONLY, *CONTROLS):
            return unknown_text(command)
        if command.name == "flatten":
            now = self.monotonic()
            step = flatten_step(command.arg, self._deadlines.pop(message.chat_id, None), now)
            if step == "ask":
                self._deadlines[message.chat_id] = now + CONFIRM_S
                return FLATTEN_ASK
            if step != "act":
                return FLATTEN_EXPIRED if step == "expired" else FLATTEN_NONE
        return self._on_loop(command.name, message.chat_id)

    def _on_loop(self, name: str, chat_id: int) -> str:
        if self._stopping.is_set():
            return "the bot is stopping: nothing done"
        try:
            future = asyncio.run_coroutine_threadsafe(self.answer(name, chat_id), self.loop)
        except RuntimeError:  # the loop is closed
            return "the bot is stopping: nothing done"
        try:
            return future.result(timeout=self.wait_s)
        except TimeoutError:
            return f"{name}: accepted, acts once the desk is free"
        except Exception as exc:  # noqa: BLE001 - said to the chat, the bot goes on
            log.exception("telegram /%s failed", name, extra={"event": "telegram_failed"})
            return f"{name} failed: {exc}"


class DeskAnswers:
    """The answers that read or act on the desk: called on the supervisor's loop only."""

    def __init__(
        self,
        desk: Desk,
        controls: Controls,
        status: Callable[[], Status],
        broker: str,
        now: Callable[[], float],
    ) -> None:
        self.desk = desk
        self.controls = controls
        self.status = status
        self.broker = broker
        self.now = now

    async def __call__(self, name: str, chat_id: int) -> str:
        now = self.now()
        if name in CONTROLS:
            result = await self.controls.apply(Control(name, "telegram", str(chat_id)), now)
            return f"{name}: {result}"
        if name == "status":
            return status_text(self.view())
        desk = self.desk
        summary = desk.journal.day_summary(desk.state.day if desk.state else desk.day_of(now))
        texts = {"positions": positions_text, "pnl": pnl_text, "report": report_text}
        return texts[name](summary)

    def view(self) -> StatusView:
        status, desk = self.status(), self.desk
        return StatusView(
            state=status.state,
            broker=self.broker,
            mode=desk.executor.mode,
            connected=status.connected,
            market_open=status.market_open,
            paused=desk.paused,
            halted=status.halted,
            halted_reason=status.halted_reason,
            cycles=status.cycles,
            cycle_seconds=status.cycle_seconds,
            symbols_ok=status.symbols_ok,
            symbols_failed=status.symbols_failed,
            symbols_skipped=status.symbols_skipped,
            open_positions=status.open_positions,
            day_pnl=status.day_pnl,
        )


class RefusedChatsCollector(Collector):
    """``ibkr_bot_telegram_refused_total``: messages from chats not allowed."""

    def __init__(self, commands: TelegramCommands) -> None:
        self.commands = commands

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "ibkr_bot_telegram_refused",
            "Telegram messages from chats (or users) not allowed (not answered)",
            value=self.commands.refused,
        )


def start_commands(
    settings: Settings,
    server: ControlServer | None,
    desk: Desk,
    controls: Controls,
    status: Callable[[], Status],
    now: Callable[[], float],
) -> TelegramCommands | None:
    """The command bot polling from the desk's start (None when alerts.telegram_commands is
    off); the loop calls ``stop()`` at its shutdown."""
    alerts = settings.alerts
    if not alerts.telegram_commands or alerts.telegram_bot_token is None:
        return None
    api = BotApi(
        alerts.telegram_api, alerts.telegram_bot_token.get_secret_value(), alerts.timeout_s
    )
    answers = DeskAnswers(desk, controls, status, desk.broker.name, now)
    commands = TelegramCommands(
        api,
        alerts.telegram_allowed_chats,
        asyncio.get_running_loop(),
        answers,
        allowed_users=alerts.telegram_allowed_users,
    )
    if server is not None:
        server.add_collector(RefusedChatsCollector(commands))
    commands.start()
    log.info(
        "telegram commands: polling %s for chats %s, users %s",
        api.host,
        ", ".join(map(str, sorted(commands.allowed))),
        ", ".join(map(str, sorted(commands.allowed_users))) or "any member",
        extra={"event": "telegram_commands"},
    )
    return commands
