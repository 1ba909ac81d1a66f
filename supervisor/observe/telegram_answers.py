"""The Telegram command bot's words, as pure functions: what a chat sent, what it is told.

    getUpdates' ``result`` --updates()--> ChatMessage(update_id, chat_id, text), next offset
    a message's text --parse()--> Command(name, arg, bot) ("/pnl@MyBot" is /pnl for MyBot;
        for_another_bot(): a command addressed to another bot of a group is not ours)
    /flatten, /flatten confirm --flatten_step(arg, deadline, now)--> ask | act | expired | none
    a StatusView / a day's summary (Journal.day_summary, read by key) --*_text()--> the answer

runtime/telegram_commands.py does the polling, the sending and the acting; nothing here reads
a clock, a file or the network, so every answer is tested as a value. Money is printed in
cents, signed (a loss never reads as a gain); an answer never exceeds Telegram's 4096
characters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

TEXT_LIMIT = 4096  # Telegram's longest message
CONFIRM_S = 60.0  # real seconds a /flatten waits for its "/flatten confirm"
READ_ONLY = ("status", "positions", "pnl", "report")
CONTROLS = ("pause", "resume", "flatten")
COMMANDS = (*READ_ONLY, *CONTROLS, "help")

HELP = (
    "commands:\n"
    "/status - connection, market, cycles, paused, kill switch\n"
    "/positions - open positions with mark and P&L\n"
    "/pnl - today's P&L\n"
    "/report - today's report in short\n"
    "/pause - refuse new entries (exits keep working)\n"
    "/resume - allow entries again\n"
    "/flatten - cancel entries, close every position, pause (asks for a confirmation)"
)
FLATTEN_ASK = (
    "flatten cancels the bot's working entries and closes every position it holds, then "
    f"pauses. Reply /flatten confirm within {CONFIRM_S:.0f} s to do it."
)
FLATTEN_EXPIRED = "the /flatten confirmation came too late: nothing done. Send /flatten again."
FLATTEN_NONE = "no /flatten to confirm: nothing done. Send /flatten first."

FlattenStep = Literal["ask", "act", "expired", "none"]


@dataclass(frozen=True)
class ChatMessage:
    update_id: int
    chat_id: int
    text: str
    user_id: int | None = None  # who sent it (``from.id``; none: a channel, an anonymous admin)


@dataclass(frozen=True)
class Command:
    name: str  # lower case, without the slash and the bot's @name
    arg: str  # the rest of the line, stripped and lower case ("confirm")
    bot: str = ""  # the @name it was addressed to, lower case ("": every bot of the chat)


@dataclass(frozen=True)
class StatusView:
    """What /status says: plain values the runtime reads on the loop."""

    state: str  # starting | waiting for gateway | trading
    broker: str
    mode: str  # dry_run | whatif | live
    connected: bool
    market_open: bool
    paused: bool
    halted: bool
    halted_reason: str
    cycles: int
    cycle_seconds: float | None
    symbols_ok: int
    symbols_failed: int
    symbols_skipped: int
    open_positions: int
    day_pnl: float | None


def updates(result: object) -> tuple[list[ChatMessage], int | None]:
    """The text messages of a getUpdates ``result`` and the offset that confirms them all
    (None: nothing came). Updates of other kinds (an edit, a member joining) only move the
    offset on; a malformed entry is skipped, never raised."""
    messages: list[ChatMessage] = []
    last: int | None = None
    for update in result if isinstance(result, list) else []:
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            continue
        update_id = update["update_id"]
        last = update_id if last is None else max(last, update_id)
        message = update.get("message")
        if not isinstance(message, dict):
            continue
        chat = message.get("chat")
        text = message.get("text")
        sender = message.get("from")
        user = sender.get("id") if isinstance(sender, dict) else None
        if isinstance(chat, dict) and isinstance(chat.get("id"), int) and isinstance(text, str):
            user_id = user if isinstance(user, int) else None
            messages.append(ChatMessage(update_id, chat["id"], text, user_id))
    return messages, None if last is None else last + 1


def parse(text: str) -> Command | None:
    """``/name[@bot] [arg]`` as a Command; None for text that is not a command."""
    words = text.strip().split(maxsplit=1)
    if not words or not words[0].startswith("/") or len(words[0]) < 2:
        return None
    name, _, bot = words[0][1:].lower().partition("@")
    return Command(name, words[1].strip().lower() if len(words) > 1 else "", bot)


def for_another_bot(command: Command, username: str) -> bool:
    """``/flatten@OtherBot confirm`` in a group both bots are in is the other bot's: Telegram
    names the bot a command is for only so (a bare ``/flatten`` is for every bot there)."""
    return bool(command.bot) and command.bot != username.lower().lstrip("@")


def flatten_step(arg: str, deadline: float | None, now: float) -> FlattenStep:
    """A /flatten's turn in its two-step dialogue: a bare /flatten asks; "/flatten confirm"
    acts only before the ask's deadline."""
    if arg != "confirm":
        return "ask"
    if deadline is None:
        return "none"
    return "act" if now <= deadline else "expired"


def unknown_text(command: Command) -> str:
    return f"unknown command /{command.name[:32]}\n{HELP}"


def money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+,.2f}"


def price(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def status_text(view: StatusView) -> str:
    trading = "PAUSED (new entries refused)" if view.paused else "entries allowed"
    kill = f"TRIPPED: {view.halted_reason}" if view.halted else "off"
    last = (
        f"last cycle {view.cycle_seconds:.1f}s: symbols ok {view.symbols_ok} "
        f"failed {view.symbols_failed} skipped {view.symbols_skipped}"
        if view.cycle_seconds is not None
        else "no cycle yet"
    )
    return _limit(
        "\n".join(
            (
                f"{view.state} on {view.broker}, mode {view.mode}",
                f"connected: {'yes' if view.connected else 'NO'} | market "
                f"{'open' if view.market_open else 'closed'}",
                f"{trading} | kill switch {kill}",
                f"cycles {view.cycles}; {last}",
                f"open positions {view.open_positions} | day P&L {money(view.day_pnl)}",
            )
        )
    )


def positions_text(summary: Mapping[str, Any]) -> str:
    held: Sequence[Mapping[str, Any]] = summary["positions"]["open"]
    if not held:
        return f"{summary['day']}: no open position"
    lines = [f"{summary['day']}: {len(held)} open"]
    lines += [
        f"{p.get('action', 'BUY')} {p['quantity']} x {p['contract']} ({p['status']}) "
        f"entry {price(p['entry_price'])} mark {price(p['mark'])} P&L {money(p['pnl'])} "
        f"tp {price(p['take_profit'])} sl {price(p['stop_loss'])}"
        for p in held
    ]
    return _limit("\n".join(lines))


def pnl_text(summary: Mapping[str, Any]) -> str:
    pnl, fills = summary["pnl"], summary["fills"]
    closed = summary["positions"]["closed"]
    wins = sum(1 for p in closed if (p.get("pnl") or 0.0) > 0)
    lines = [
        f"{summary['day']} P&L: total {money(pnl['total'])}",
        f"realized {money(pnl['realized'])} | unrealized {money(pnl['unrealized'])}",
        f"closed {len(closed)} (won {wins}) | open {len(summary['positions']['open'])} | "
        f"fills {fills['count']}, commission {price(fills['commission'])}",
    ]
    broker = summary.get("broker")
    if broker:
        lines.append(
            f"IBKR: daily {money(broker['daily'])}, realized {money(broker['realized'])}, "
            f"unrealized {money(broker['unrealized'])}"
        )
    return _limit("\n".join(lines))


def report_text(summary: Mapping[str, Any]) -> str:
    """The day's report in a phone's screenful: the figures ``report`` prints, in short."""
    cycles, signals, decisions = summary["cycles"], summary["signals"], summary["decisions"]
    kill = summary["kill_switch"]
    positions = summary["positions"]
    lines = [
        f"report {summary['day']}",
        f"cycles {cycles['count']} (unfinished {cycles['unfinished']}) | symbols ok "
        f"{cycles['symbols_ok']} failed {cycles['symbols_failed']}",
        f"signals: {_counts(signals['by_kind'])}",
        f"intents {summary['intents']['recorded']} | accepted {decisions['accepted']} "
        f"refused {decisions['refused']}",
        f"refused by rule: {_counts(decisions['refused_by_rule'])}",
        "orders: "
        + (
            ", ".join(f"{o['mode']} {o['status']} {o['count']}" for o in summary["orders"])
            or "none"
        ),
        f"positions: opened {positions['opened']}, open {len(positions['open'])}, "
        f"closed {len(positions['closed'])}",
        f"P&L: realized {money(summary['pnl']['realized'])}, unrealized "
        f"{money(summary['pnl']['unrealized'])}, total {money(summary['pnl']['total'])}",
        f"kill switch: {'TRIPPED: ' + str(kill['reason']) if kill['halted'] else 'off'}",
        f"alerts {len(summary['alerts'])} | controls {len(summary.get('controls', ()))}",
    ]
    return _limit("\n".join(lines))


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"


def _limit(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"
