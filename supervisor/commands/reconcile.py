"""``python -m supervisor reconcile``: the journal against the broker, on demand.

Connects (another client id if the bot holds its own: 326 -> the next), asks for every open
order of the account and today's executions, reads the journal without locking it (the bot
may be running) and prints what matches, what the bot would adopt at its next start, and
what does not belong (orders and positions the bot did not make, journal positions the broker
does not hold, rows the journal still follows that IBKR no longer lists, a gateway whose
account is not the journal's or the settings' ibkr.account, which ``run`` would refuse). It
changes nothing, at the broker or in the journal. Orders and positions that are not the bot's
(the trader's own) are listed as "not ours": the bot leaves them alone, so they are no
problem unless ``--strict``. Exit 0 when everything matches, 1 when there are problems, 2
when there is no journal or it cannot be read (or bad settings), 3 when the broker cannot be
reached. No journal stays 2, not 0: it nearly always means other settings or another market
than the bot ran with (a nightly ``reconcile || alert`` would otherwise pass comparing
nothing), and the message says which journal it looked for. An older journal is read as it
is, without migrating it (journal/schema.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from common.config import Settings
from supervisor import exitcodes
from supervisor.broker.base import Broker, BrokerError
from supervisor.commands.options import (
    MARKET_ERRORS,
    add_market_options,
    load,
    market_error,
    market_for,
)
from supervisor.journal.rows import JournalError
from supervisor.journal.store import Journal
from supervisor.runtime.clock import Clock
from supervisor.runtime.sessions import broker_session
from supervisor.trading.live_reconcile import reconcile


def cmd_reconcile(args: argparse.Namespace) -> int:
    settings = load(args)
    if settings is None:
        return exitcodes.USAGE
    market = market_for(args, settings)
    if market is None:
        return exitcodes.USAGE
    try:
        with broker_session(
            settings, market, args.scenario, start=args.start, sim_clock=args.sim_clock
        ) as (broker, clock, used):
            return asyncio.run(compare(broker, used, clock, strict=args.strict))
    except MARKET_ERRORS as exc:
        return market_error(exc)


async def compare(broker: Broker, settings: Settings, clock: Clock, strict: bool = False) -> int:
    path = Path(settings.execution.journal_path)
    if not path.exists():
        print(
            f"no journal at {path}: nothing to reconcile (the bot has not run with these "
            "settings on this market: --config and --broker name the ones it ran with)",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    try:
        await broker.connect()
    except BrokerError as exc:
        print(f"cannot connect: {exc}", file=sys.stderr)
        return exitcodes.CANNOT_CONNECT
    try:
        await broker.refresh_orders()
        with Journal(path, readonly=True) as journal:
            found = reconcile(broker, journal, clock.now(), adopt=False)
            owner = journal.owner()
        found.problems[:0] = account_problems(
            broker.managed_accounts(), owner[1] if owner else "", settings.ibkr.account
        )
    except JournalError as exc:  # as report: the journal, not the broker (exit 2)
        print(f"cannot read the journal: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    except (BrokerError, TimeoutError) as exc:
        print(f"reconcile failed: {exc}", file=sys.stderr)
        return exitcodes.CANNOT_CONNECT
    finally:
        await broker.disconnect()
    problems = found.problems if strict else found.real_problems()
    print(
        f"reconcile {path.resolve()} against {broker.name} "
        f"{','.join(broker.managed_accounts())}: {len(found.ours)} matching, "
        f"{len(found.adopted)} to adopt at the next start, {len(found.not_ours)} not ours, "
        f"{len(found.real_problems())} problems"
    )
    for line in found.lines(strict):
        print(f"  {line}")
    return exitcodes.FAILED if problems else exitcodes.OK


def add_reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    add_market_options(parser)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="orders and positions the bot did not make are problems too (exit 1)",
    )


def account_problems(accounts: list[str], journal_account: str, wanted: str) -> list[str]:
    """The gateway's accounts against the journal's and the settings' (``run`` refuses a
    journal of another account, and live trading an ibkr.account the login lacks)."""
    problems = []
    shown = ", ".join(accounts) or "none reported"
    if journal_account and journal_account not in accounts:
        problems.append(
            f"the gateway manages {shown}, not the journal's account "
            f"{journal_account}: run would refuse this journal"
        )
    if wanted and wanted not in accounts:
        problems.append(
            f"the gateway manages {shown}, not ibkr.account {wanted}: run would refuse live trading"
        )
    if journal_account and wanted and journal_account != wanted:
        problems.append(
            f"the journal belongs to account {journal_account}, the settings name "
            f"ibkr.account {wanted}: run would refuse this journal"
        )
    return problems
