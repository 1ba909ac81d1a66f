"""Stop means stop, on the wire: ``python -m supervisor run --live`` as a process, talking to
the simulated gateway (a process of its own, which outlives the bot as IB Gateway does)
through a loopback proxy that records each message the bot writes as it arrives
(tests/wire_recorder.py).

- SIGTERM at any point of a cycle sending brackets: no bracket is written after the bot took
  the signal (one written just before arrives whole, its exits with it); the entries still
  working are cancelled and what stays working is journaled (left_working).
- SIGKILL between a bracket's parent and its exits (the proxy forwards the parent, holds the
  take-profit and stop back, and the bot is killed): the restart leaves nothing half sent
  working at the gateway, sends that intent no more, and ``reconcile`` finds all matching.
"""

from __future__ import annotations

import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest_sim import next_client_id, run_client, write_scenario
from tests.external_sim import ExternalSim, bot, bot_env, wait_for
from tests.ibclient import IB
from tests.sessions import TUESDAY_MORNING
from tests.test_live_e2e import journal_rows, journaled
from tests.wire_recorder import CANCEL_ORDER, PLACE_ORDER, Sent, WireRecorder

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

# Brackets on every symbol at once (SPY, AAPL calls, QQQ puts), entries at the ask (most fill
# at once: their exits stay working), exits far away (nothing closes meanwhile)
SETTINGS = """execution:
  mode: live
ibkr:
  account: DU1234567
strategy:
  name: tests.strategies:BuysEverySymbol
options:
  moneyness: itm
  entry_price: ask
  take_profit_pct: 400
  stop_loss_pct: 90
"""
# The session at half speed, prices moving once a minute: a restart sees the same market
CLOCK = {"rate": 0.5, "market_step_s": 60}
# The bot takes a signal in its event loop (the handler logs it, then stops entries; between
# them nothing else runs): a parent it wrote before then reached the proxy's socket before
# that log record was made. The record's time is kept to the millisecond (rounded down); a
# message whose kernel stamp is only a bound (read with more queued behind it) gets as long
# as bytes may wait in the kernel with later ones
LOG_TICK_S = 0.001
IN_FLIGHT_S = 0.5


def setup(home: Path) -> tuple[Path, Path]:
    config = home / "live.yaml"
    config.write_text(SETTINGS)
    scenario = write_scenario(
        home / "scenario.yaml", TUESDAY_MORNING, clock=CLOCK, market_data={"stream_interval_s": 1.0}
    )
    return config, scenario


def start_bot(
    home: Path, config: Path, clock_file: Path, port: int, stderr: Any, *extra: str
) -> subprocess.Popen[bytes]:
    args = ["--broker", "sim", "--sim-clock", str(clock_file), "--port", str(port)]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor",
            "run",
            *args,
            "--config",
            str(config),
            "--live",
            "--interval",
            "0.3",
            *extra,
        ],
        cwd=home,
        env=bot_env(home),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def ours_at_gateway(port: int, refs: set[str]) -> list[tuple[str, str, int, str]]:
    """(orderRef, action, order id, status) of every order working at the gateway whose
    orderRef is one of ``refs``, as a client of its own sees them (all client ids)."""

    async def look() -> list[tuple[str, str, int, str]]:
        ib = IB()
        await ib.connectAsync("127.0.0.1", port, clientId=next_client_id(), timeout=20)
        try:
            trades = await ib.reqAllOpenOrdersAsync()
            return sorted(
                (t.order.orderRef, t.order.action, t.order.orderId, t.orderStatus.status)
                for t in trades
                if t.order.orderRef.split(":")[0].split(".")[0] in refs
            )
        finally:
            ib.disconnect()

    return run_client(look)


def signal_handled_at(home: Path) -> float:
    """When the bot's signal handler ran: its log record's time (this machine's wall clock,
    to the millisecond, rounded down)."""
    log = home / "var" / "bot.jsonl"
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("event") == "signal":
            stamp, millis = record["asctime"].split(",")
            return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
    raise AssertionError("the bot never logged the signal")


def late_orders(placed: list[Sent], signal_at: float, handled_at: float) -> list[str]:
    """What in ``placed`` breaks "no new bracket after the signal": a parent written after the
    bot took the signal (at ``handled_at``), one that arrived after the signal without its
    two exits, an order after the signal that does not follow its own bracket's parent; the
    expiry guard's closing orders (``:expiry``) are exits of their own."""
    parents = {(m.conn, m.order_id): m for m in placed if m.is_parent}
    wrong = []
    for m in placed:
        if m.is_parent and m.at > handled_at + (LOG_TICK_S if m.exact else IN_FLIGHT_S):
            wrong.append(
                f"parent {m.order_id} ({m.order_ref}) reached the proxy "
                f"{m.at - handled_at:+.4f}s after the bot took the signal "
                f"({'its send' if m.exact else 'a bound'})"
            )
        if m.at <= signal_at or m.order_ref.endswith(":expiry"):
            continue
        if m.is_parent:
            exits = [c for c in placed if c.conn == m.conn and c.parent_id == m.order_id]
            if len(exits) != 2:
                wrong.append(
                    f"parent {m.order_id} ({m.order_ref}) sent after the signal "
                    f"with {len(exits)} exit(s)"
                )
            continue
        parent = parents.get((m.conn, m.parent_id))
        if parent is None or parent.at > m.at or parent.order_ref != m.order_ref:
            wrong.append(
                f"order {m.order_id} ({m.order_ref}, {m.action}) sent after the "
                "signal without its bracket's parent before it"
            )
    return wrong


def order_row(journal: Path) -> bool:
    """Whether a live order row is journaled ('sending', then sent or not_sent); a journal
    being created, or busy a moment, is not yet."""
    try:
        return journaled(journal, "SELECT 1 FROM orders WHERE mode = 'live'")
    except sqlite3.OperationalError:
        return False


def when_to_stop(
    moment: str, home: Path
) -> tuple[Callable[[Sent], bool] | None, Callable[[], bool] | None, str]:
    """The signal's moment: a proxy record that fires it (checked as the message arrives,
    before it is forwarded), or a journal condition the test waits for; and its name."""
    journal = home / "var" / "journal-sim.sqlite"
    if moment == "first-sending-row":
        return None, lambda: order_row(journal), "the first order row"
    if moment == "first-placeOrder":
        return (lambda m: m.msg_id == PLACE_ORDER), None, "the first placeOrder at the proxy"
    # the k-th message after the first placeOrder: mid-cycle, between or inside brackets
    k = random.randint(1, 8)
    seen: list[Sent] = []

    def kth(m: Sent) -> bool:
        if seen or m.msg_id == PLACE_ORDER:
            seen.append(m)
        return len(seen) == k + 1

    return kth, None, f"message {k} after the first placeOrder"


@pytest.mark.parametrize("moment", ["first-sending-row", "first-placeOrder", "mid-cycle"])
def test_after_sigterm_no_new_bracket_reaches_the_gateway(tmp_path: Path, moment: str) -> None:
    config, scenario = setup(tmp_path)
    journal = tmp_path / "var" / "journal-sim.sqlite"
    err = tmp_path / "bot.stderr"
    fire, condition, what = when_to_stop(moment, tmp_path)
    with (
        ExternalSim(tmp_path, scenario) as sim,
        WireRecorder(sim.port) as wire,
        err.open("w") as stderr,
    ):
        sent_at: list[float] = []  # when SIGTERM was sent (time.time())
        bots: list[subprocess.Popen[bytes]] = []

        def stop() -> None:
            if not sent_at:
                sent_at.append(time.time())
                bots[0].send_signal(signal.SIGTERM)

        if fire is not None:  # from the proxy's thread, as the message arrives
            wire.on_message = lambda m: stop() if not sent_at and fire(m) else None
        proc = start_bot(tmp_path, config, sim.clock_file, wire.port, stderr, "--cycles", "0")
        bots.append(proc)
        try:
            # Given a live bot sending its first cycle's brackets through the proxy
            # When SIGTERM reaches it at that moment
            if condition is not None:
                deadline = time.monotonic() + 60
                while not condition() and proc.poll() is None:
                    assert time.monotonic() < deadline, f"{what}: not within 60s"
                    time.sleep(0.005)  # the journal row comes a moment before the send
                stop()
            else:
                wait_for(lambda: bool(sent_at) or proc.poll() is not None, 60, what)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        said = err.read_text()
        assert sent_at, said[-3000:]
        assert code == 0, said[-3000:]
        stats = sim.stats_once_alone()
        refs = {str(ref) for (ref,) in journal_rows(journal, "SELECT intent_id FROM intents")}
        working = ours_at_gateway(sim.port, refs)
    signal_at, handled_at = sent_at[0], signal_handled_at(tmp_path)
    messages = wire.messages()
    placed = [m for m in messages if m.msg_id == PLACE_ORDER]
    # Then no new bracket left after the bot took the signal: a parent that arrived after
    # the signal was written before, its exits with it; every other order follows its parent
    assert not late_orders(placed, signal_at, handled_at), (
        what,
        late_orders(placed, signal_at, handled_at),
        [(round(m.at - signal_at, 3), m.order_id, m.order_ref, m.action) for m in placed],
    )
    # and every bracket reached the gateway whole, once
    assert all(n == 3 for n in stats["orders_by_ref"].values()), stats["orders_by_ref"]
    # A bracket decided but not sent is journaled so: its row not_sent, its decision refused
    rows = journal_rows(journal, "SELECT intent_id, status, broker_order_id FROM orders")
    assert {status for _, status, _ in rows} <= {
        "submitted",
        "working",
        "done",
        "cancelled",
        "not_sent",
    }, rows
    assert {ref for ref, status, _ in rows if status == "not_sent"}.isdisjoint(
        stats["orders_by_ref"]
    ), (rows, stats["orders_by_ref"])
    # The entries still working at the stop were cancelled (cancelOrder for each, after the
    # signal): no BUY of ours works at the gateway now
    cancelled = {order_id for _, status, order_id in rows if status == "cancelled"}
    cancels = {m.order_id for m in messages if m.msg_id == CANCEL_ORDER and m.at > signal_at}
    assert cancelled <= cancels, (cancelled, cancels)
    assert not [o for o in working if o[1] == "BUY"], working
    # and what stays working (the exits of what was bought) is journaled, order by order
    left = journal_rows(journal, "SELECT text FROM alerts WHERE kind = 'left_working'")
    said_left = {
        int(m.group(1)) for (text,) in left if (m := re.search(r"\(order (\d+), ref ", str(text)))
    }
    assert said_left == {order_id for _, _, order_id, _ in working}, (left, working)
    assert {action for _, action, _, _ in working} <= {"SELL"}


def test_a_bracket_cut_after_its_parent_by_sigkill_is_not_left_half_sent(tmp_path: Path) -> None:
    config, scenario = setup(tmp_path)
    journal = tmp_path / "var" / "journal-sim.sqlite"
    err = tmp_path / "bot.stderr"
    with (
        ExternalSim(tmp_path, scenario) as sim,
        WireRecorder(sim.port) as wire,
        err.open("w") as stderr,
    ):
        # Given a live bot whose first bracket's parent (BUY, transmit=False) has reached the
        # gateway, its take-profit and stop held back on the way
        wire.hold_after = lambda m: m.is_parent
        proc = start_bot(tmp_path, config, sim.clock_file, wire.port, stderr, "--cycles", "0")
        try:
            wait_for(
                lambda: wire.holding.is_set() or proc.poll() is not None,
                60,
                "a bracket's parent forwarded",
            )
            # When the bot is killed right then (SIGKILL: no stop, no cancel), its connection
            # closing at both ends
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert wire.holding.is_set(), err.read_text()[-3000:]
        cut = next(m for m in wire.messages() if m.is_parent)
        sent_once = sim.stats_once_alone()["orders_by_ref"]
        assert sent_once == {cut.order_ref: 1}, sent_once  # the parent alone got through
        # the simulator keeps it untransmitted (Held): never working, listed to no client
        assert ours_at_gateway(sim.port, {cut.order_ref}) == []
        # When the bot starts again on the same journal and gateway, for a few cycles
        again = bot(
            tmp_path,
            "run",
            *sim.args,
            "--config",
            str(config),
            "--live",
            "--cycles",
            "4",
            "--interval",
            "0.3",
        )
        assert again.returncode == 0, again.stderr[-3000:]
        after = ours_at_gateway(sim.port, {cut.order_ref})
        check = bot(tmp_path, "reconcile", *sim.args, "--config", str(config))
        stats = sim.stop()
    # Then nothing of the cut bracket works at the gateway (whole or none), its intent was
    # not sent again, and the account holds none of its contract
    assert after == [], after
    assert stats["orders_by_ref"][cut.order_ref] == 1, stats["orders_by_ref"]
    assert all(n == 3 for ref, n in stats["orders_by_ref"].items() if ref != cut.order_ref)
    ((symbol, expiry, strike, right),) = journal_rows(
        journal,
        (
            "SELECT contract_symbol, expiry, strike, option_right FROM intents "
            f"WHERE intent_id = '{cut.order_ref}'"
        ),
    )
    held = [
        p
        for p in stats["account"]["positions"]
        if p["quantity"]
        and (p["symbol"], p["expiry"], p["strike"], p["right"]) == (symbol, expiry, strike, right)
    ]
    assert held == [], held
    # and the journal says it was never sent (the row the crash left 'sending' is not_sent)
    rows = journal_rows(journal, f"SELECT status FROM orders WHERE intent_id = '{cut.order_ref}'")
    assert rows == [("not_sent",)], rows
    # and reconcile, with the same settings, finds the journal and the broker matching
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
