"""Alerts off the trading path: the caller only enqueues; one daemon thread per channel does
the HTTP, so a channel that hangs (timeout x attempts per alert) delays only itself.

    supervisor loop --send() / send_once() / heartbeat(): never blocks--> one bounded queue
        per channel (full: the alert is dropped and counted; logged once per run of drops)
    "alerts-discord" | "alerts-slack" | "alerts-telegram" | "alerts-webhook" threads
        --urllib, timeout, bounded retries--> that channel's endpoint
    "alerts-heartbeat" thread --GET--> heartbeat URL (its own lane: never behind trade alerts)

Payloads: Discord ``{"content": text}``, Slack ``{"text": text}``, Telegram
``{"chat_id": …, "text": …}`` POSTed to ``{telegram_api}/bot{token}/sendMessage``, the generic
webhook ``{"kind", "text", "fields", "ts"}``; the heartbeat is a plain GET. For the chat
channels, ``fields`` are appended to the text as ``key: value`` lines.

Webhook URLs and the bot token are secrets: a failure is logged with the channel name and a
reason built from the error's kind (HTTP status, connection refused, timed out), never its
message text (urllib puts URLs there), and every secret is masked in it all the same.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

from common.config import AlertsSettings

log = logging.getLogger(__name__)

USER_AGENT = "ibkr-options-bot-alerts/0.1"  # Discord's edge refuses urllib's default agent
MAX_BACKOFF_S = 5.0
STOP_WAIT_MAX_S = 15.0  # what a stop waits for queued alerts, at most (systemd allows 120 s)
RESPONSE_READ_BYTES = 64 * 1024  # a webhook answer is tiny; never read an unbounded body
TEXT_LIMITS = {"discord": 2000, "slack": 40_000, "telegram": 4096}  # each service's maximum


@dataclass(frozen=True)
class Delivery:
    """One HTTP request for one channel; the URL is secret and kept out of ``repr``."""

    channel: str
    method: str
    url: str = field(repr=False)
    body: bytes | None = field(default=None, repr=False)


# an alert's extra facts (values are printed or JSON-encoded with str() as the fallback)
Fields = Mapping[str, object]
Payload = dict[str, object]
# (kind, text, fields, ts) -> the channel's JSON payload
Builder = Callable[[str, str, "Fields | None", float], Payload]
# (delivery, timeout_s) -> None, or raises what urllib raises; tests pass a fake
Transport = Callable[[Delivery, float], None]

_STOP = object()  # queued by stop(): everything before it is delivered first


class _Lane:
    """One channel's bounded queue and its delivery thread."""

    def __init__(self, channel: str, size: int) -> None:
        self.channel = channel
        self.queue: queue.Queue[Delivery | object] = queue.Queue(maxsize=size)
        self.thread: threading.Thread | None = None
        self.dropped = 0  # this lane's total
        self.streak = 0  # dropped since the last one that got in: logged once, when it ends


class Alerter:
    """Fire-and-forget alerts: ``send`` returns at once; each channel delivers on its own
    thread."""

    def __init__(
        self,
        settings: AlertsSettings,
        *,
        backoff_s: float = 0.5,
        today: Callable[[], date] = date.today,
        wall_clock: Callable[[], float] = time.time,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        self._backoff_s = backoff_s
        self._today = today
        self._wall_clock = wall_clock
        self._transport = transport or _urlopen
        self._lock = threading.Lock()
        self._stats = {"sent": 0, "failed": 0, "dropped": 0, "retries": 0}
        self._sent_once: dict[str, date] = {}
        self._heartbeat_pending = False
        self._stop_at: float | None = None  # monotonic deadline once stop() was called
        self._stopping = threading.Event()  # cuts a retry's back-off short at stop()
        self._secrets = _secret_values(settings)
        self._channels = self._configured_channels()
        self._lanes = {name: _Lane(name, settings.queue_size) for name, _ in self._channels}
        if settings.heartbeat_url is not None:
            self._lanes["heartbeat"] = _Lane("heartbeat", 1)  # one ping waits at most

    @property
    def channels(self) -> list[str]:
        return [name for name, _ in self._channels]

    # ---- the caller's side: never blocks ------------------------------------------------------

    def start(self) -> None:
        for lane in self._lanes.values():
            if lane.thread is None:
                lane.thread = threading.Thread(
                    target=self._run, args=(lane,), name=f"alerts-{lane.channel}", daemon=True
                )
                lane.thread.start()

    def send(self, kind: str, text: str, fields: Fields | None = None) -> int:
        """Queue the alert for every configured channel; returns how many were queued."""
        ts = self._wall_clock()
        queued = 0
        for name, (url, build) in self._channels:
            body = _json_body(build(kind, text, fields, ts))
            queued += self._enqueue(Delivery(name, "POST", url, body))
        return queued

    def send_once(self, key: str, kind: str, text: str, fields: Fields | None = None) -> bool:
        """Send ``key`` at most once per day (the kill switch must not alert every cycle)."""
        today = self._today()
        with self._lock:
            if self._sent_once.get(key) == today:
                return False
            # Yesterday's keys are done with: keeping them would only grow the dict.
            self._sent_once = {k: d for k, d in self._sent_once.items() if d == today}
            self._sent_once[key] = today
        self.send(kind, text, fields)
        return True

    def heartbeat(self) -> bool:
        """Queue a GET of the heartbeat URL, unless one is already waiting (no pile-up)."""
        url = self.settings.heartbeat_url
        if url is None:
            return False
        with self._lock:
            if self._heartbeat_pending:
                return False
            self._heartbeat_pending = True
        queued = self._enqueue(Delivery("heartbeat", "GET", url.get_secret_value()))
        if not queued:
            with self._lock:
                self._heartbeat_pending = False
        return queued

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                **self._stats,
                "queued": sum(lane.queue.qsize() for lane in self._lanes.values()),
            }

    def dropped_by_channel(self) -> dict[str, int]:
        with self._lock:
            return {name: lane.dropped for name, lane in self._lanes.items()}

    def stop(self, timeout_s: float | None = None) -> None:
        """Deliver what is queued for up to ``timeout_s`` (all channels at once), then stop;
        the rest is dropped. By default long enough for a delivery already under way and
        one more (the final 'stopped' alert, queued last: for an unattended bot the one that
        matters) at the channel's own timeout, at most STOP_WAIT_MAX_S."""
        if timeout_s is None:
            timeout_s = min(2 * self.settings.timeout_s + 1.0, STOP_WAIT_MAX_S)
        self._stop_at = time.monotonic() + timeout_s
        self._stopping.set()
        for lane in self._lanes.values():
            if lane.thread is None or not lane.thread.is_alive():
                self._abandon_queued(lane)  # not running: nothing will deliver these
                continue
            with contextlib.suppress(queue.Full):  # full: the thread ends once it is empty
                lane.queue.put_nowait(_STOP)
        for lane in self._lanes.values():
            if lane.thread is not None:
                lane.thread.join(max(0.0, self._stop_at - time.monotonic()))
        busy = [
            lane.channel
            for lane in self._lanes.values()
            if lane.thread is not None and lane.thread.is_alive()
        ]
        if busy:
            log.warning(
                "alerts via %s still busy after %.1f s; undelivered alerts are dropped "
                "(daemon threads, they end with the process)",
                ", ".join(busy),
                timeout_s,
            )

    def _enqueue(self, delivery: Delivery) -> bool:
        lane = self._lanes[delivery.channel]
        if self._stop_at is None:
            try:
                lane.queue.put_nowait(delivery)
                return True
            except queue.Full:
                reason = f"its queue of {lane.queue.maxsize} is full"
        else:
            reason = "the alerter is stopping"
        with self._lock:
            self._stats["dropped"] += 1
            lane.dropped += 1
            lane.streak += 1
            first = lane.streak == 1
        if first:  # one line per run of drops, its count when it ends (_log_streak_end)
            log.warning(
                "alerts via %s are being dropped (%s); counted in alerts_dropped_total",
                delivery.channel,
                reason,
            )
        return False

    # ---- the delivery threads, one per lane --------------------------------------------------

    def _run(self, lane: _Lane) -> None:
        while True:
            try:  # once stopping, an empty queue is the end even without a _STOP in it
                item = lane.queue.get_nowait() if self._stopping.is_set() else lane.queue.get()
            except queue.Empty:
                return
            self._log_streak_end(lane)
            if not isinstance(item, Delivery):  # _STOP, the only other thing queued
                return
            if self._past_stop_deadline():
                self._count_drop(lane)
                self._abandon_queued(lane)
                return
            try:
                self._deliver(item)
            except Exception as exc:  # the thread must outlive any one alert
                self._count("failed")
                log.error(
                    "alert via %s failed unexpectedly (%s); the thread carries on",
                    item.channel,
                    self._redact(type(exc).__name__),
                )
            finally:
                if item.channel == "heartbeat":
                    with self._lock:
                        self._heartbeat_pending = False

    def _log_streak_end(self, lane: _Lane) -> None:
        """Room again in the queue: say how many were dropped while it was full."""
        with self._lock:
            streak, lane.streak = lane.streak, 0
        if streak:
            log.warning(
                "alerts via %s: %d dropped while the queue was full (%d in all)",
                lane.channel,
                streak,
                lane.dropped,
            )

    def _deliver(self, delivery: Delivery) -> None:
        attempts = 1 + self.settings.retries
        for attempt in range(1, attempts + 1):
            try:
                self._transport(delivery, self.settings.timeout_s)
            except Exception as exc:  # classified below; unknown kinds re-raised
                reason, retryable = self._classify(exc)
            else:
                self._count("sent")
                log.debug("alert via %s delivered", delivery.channel)
                return
            if not retryable or attempt == attempts or self._past_stop_deadline():
                break
            self._count("retries")
            self._stopping.wait(min(self._backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
        log.warning(
            "alert via %s failed after %d attempt(s): %s", delivery.channel, attempt, reason
        )
        self._count("failed")  # after the log: whoever sees the count can read why

    def _classify(self, exc: Exception) -> tuple[str, bool]:
        """A loggable reason (no URL, no token) and whether another attempt may help."""
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # it holds the response body open
            return f"HTTP {exc.code}", exc.code == 429 or exc.code >= 500
        if isinstance(exc, urllib.error.URLError):
            inner = exc.reason
            if isinstance(inner, OSError):
                return self._redact(_os_reason(inner)), True
            return self._redact(f"URLError: {inner}"), False  # e.g. an unknown URL scheme
        if isinstance(exc, ValueError | http.client.InvalidURL):  # urllib quotes the URL
            return f"{type(exc).__name__} (malformed URL)", False
        if isinstance(exc, OSError):
            return self._redact(_os_reason(exc)), True
        if isinstance(exc, http.client.HTTPException):  # e.g. the server hung up mid-answer
            return type(exc).__name__, True
        raise exc

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    def _past_stop_deadline(self) -> bool:
        return self._stop_at is not None and time.monotonic() >= self._stop_at

    def _abandon_queued(self, lane: _Lane) -> None:
        while True:
            try:
                item = lane.queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._count_drop(lane)

    def _count_drop(self, lane: _Lane) -> None:
        with self._lock:
            self._stats["dropped"] += 1
            lane.dropped += 1

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # ---- channels ------------------------------------------------------------------------------

    def _configured_channels(self) -> list[tuple[str, tuple[str, Builder]]]:
        s = self.settings
        channels: list[tuple[str, tuple[str, Builder]]] = []
        if s.discord_webhook is not None:
            channels.append(("discord", (s.discord_webhook.get_secret_value(), _discord)))
        if s.slack_webhook is not None:
            channels.append(("slack", (s.slack_webhook.get_secret_value(), _slack)))
        if s.telegram_bot_token is not None and s.telegram_chat_id:
            url = (
                f"{s.telegram_api.rstrip('/')}/bot{s.telegram_bot_token.get_secret_value()}"
                "/sendMessage"
            )
            chat_id = s.telegram_chat_id
            channels.append(("telegram", (url, lambda k, t, f, ts: _telegram(chat_id, t, f))))
        elif s.telegram_bot_token is not None:
            log.warning(
                "alerts: telegram_bot_token is set but telegram_chat_id is empty; "
                "Telegram alerts are off"
            )
        if s.webhook_url is not None:
            channels.append(("webhook", (s.webhook_url.get_secret_value(), _webhook)))
        return channels


def mode_label(mode: str) -> str:
    """How a trade alert names its execution mode: ``dry_run``, ``whatif``, or ``LIVE`` in
    capitals (real money: the one a glance must never mistake)."""
    return "LIVE" if mode == "live" else mode


def cents(price: float | None) -> str:
    """A price as a trader reads it: two decimals ("n/a" when there is none)."""
    return "n/a" if price is None or not math.isfinite(price) else f"{price:.2f}"


def _urlopen(delivery: Delivery, timeout_s: float) -> None:
    request = urllib.request.Request(
        delivery.url, data=delivery.body, method=delivery.method, headers={"User-Agent": USER_AGENT}
    )
    if delivery.body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        response.read(RESPONSE_READ_BYTES)


def _discord(kind: str, text: str, fields: Fields | None, ts: float) -> Payload:
    return {"content": _chat_text(text, fields, TEXT_LIMITS["discord"])}


def _slack(kind: str, text: str, fields: Fields | None, ts: float) -> Payload:
    return {"text": _chat_text(text, fields, TEXT_LIMITS["slack"])}


def _telegram(chat_id: str, text: str, fields: Fields | None) -> Payload:
    return {"chat_id": chat_id, "text": _chat_text(text, fields, TEXT_LIMITS["telegram"])}


def _webhook(kind: str, text: str, fields: Fields | None, ts: float) -> Payload:
    return {"kind": kind, "text": text, "fields": fields or {}, "ts": ts}


def _chat_text(text: str, fields: Fields | None, limit: int) -> str:
    if fields:
        text = text + "\n" + "\n".join(f"{key}: {value}" for key, value in fields.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_body(payload: Payload) -> bytes:
    # default=str: an odd field value (a Decimal, a datetime) must not raise in the caller.
    return json.dumps(payload, default=str).encode("utf-8")


def _os_reason(exc: OSError) -> str:
    detail = exc.strerror or str(exc.args[0] if exc.args else "")
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _secret_values(settings: AlertsSettings) -> list[str]:
    """Every secret string, longest first so a URL is masked whole before its token."""
    secrets = [
        value.get_secret_value()
        for value in (
            settings.discord_webhook,
            settings.slack_webhook,
            settings.telegram_bot_token,
            settings.webhook_url,
            settings.heartbeat_url,
        )
        if value is not None and value.get_secret_value()
    ]
    return sorted(set(secrets), key=len, reverse=True)
