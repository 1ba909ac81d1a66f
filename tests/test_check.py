"""``check`` (supervisor/commands/check.py): the worker pipeline run once, in process, against
a broker, and the report of what it found."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.messages import OptionChain
from supervisor import exitcodes
from supervisor.broker.base import SymbolDataError
from supervisor.broker.stub import StubBroker
from supervisor.commands.check import CheckReport, exit_code, run_check
from tests.conftest import make_settings
from tests.sessions import STUB_SESSION

pytestmark = pytest.mark.timeout(30)


class NoChainStub(StubBroker):
    async def chain(self, symbol: str) -> OptionChain:
        raise SymbolDataError(f"chain {symbol}: IBKR lists no options")


def check(tmp_path: Path, broker_class: type[StubBroker] = StubBroker, symbol: str = "SPY"):
    settings = make_settings(tmp_path)
    now = STUB_SESSION.timestamp()
    broker = broker_class(settings.stub, lambda: now)
    return asyncio.run(run_check(broker, settings, symbol, now)), broker


def test_check_runs_the_pipeline_through_to_the_option_snapshots(tmp_path: Path) -> None:
    report, broker = check(tmp_path)
    assert report.ok and report.broker == "stub"
    assert report.price is not None and 600 < report.price < 760 and report.price_source == "mid"
    # eight weekly Fridays and the dailies of the next two weeks (Monday 01-19 is MLK Day)
    assert report.strikes > 300 and report.expirations == 15
    assert report.expiry == "20260109"  # the Friday of the stub's Thursday session
    assert report.atm == min(range(600, 760), key=lambda k: (abs(k - report.price), k))
    assert len(report.window) == 11 and report.option_quotes_usable == 3
    assert report.warnings == []
    # quote, bars, chain and the candidates' snapshots: the requests a cycle makes
    assert broker.requests == 4 and not broker.is_connected()
    lines = report.lines()
    assert lines[0].startswith("check SPY via stub: OK") and "window (11)" in lines[3]


def test_a_failing_step_is_named_and_fails_the_check(tmp_path: Path) -> None:
    report, _ = check(tmp_path, NoChainStub)
    assert not report.ok and report.price is not None and report.window == ()
    assert report.warnings == ["chain: chain SPY: IBKR lists no options"]  # no class names
    assert "FAILED" in report.lines()[0]


class UnknownSymbolStub(StubBroker):
    """A gateway that lists no such stock, in IBKR's words (error 200)."""

    async def unknown_symbols(self, symbols) -> dict[str, str]:
        return {
            s: f"{s}: error 200: No security definition has been found for the request (STK {s})"
            for s in symbols
        }


def test_an_unknown_symbol_is_named_not_called_a_connection_failure(tmp_path: Path) -> None:
    report, broker = check(tmp_path, UnknownSymbolStub, "SPYY")
    assert report.lines() == [
        "check SPYY via stub: FAILED: SPYY is unknown at the gateway (error 200: No security "
        "definition has been found for the request (STK SPYY)); check the ticker (--symbol, "
        "universe.symbols)"
    ]
    assert exit_code(report) == exitcodes.USAGE  # not CANNOT_CONNECT: the gateway answered
    assert broker.requests == 0 and not broker.is_connected()


def test_the_price_and_the_atm_are_shown_rounded() -> None:
    report = CheckReport("SPY", "ibkr", price=609.0699999999999, atm=609.0, window=(608.0, 609.0))
    assert report.lines()[1] == "  price 609.07 (-)"
    assert report.lines()[3] == "  ATM 609; window (2): 608, 609"


def test_a_check_that_found_nothing_leads_with_the_cause_not_empty_fields() -> None:
    cause = "cannot connect to 127.0.0.1:4002: connection refused"
    report = CheckReport("SPY", "ibkr", seconds=0.01, warnings=[cause])
    assert report.lines() == [f"check SPY via ibkr: FAILED in 0.01s: {cause}"]
    partial = CheckReport("SPY", "ibkr", price=600.0, price_source="last").lines()
    assert "expiry n/a" in partial[2] and partial[3].endswith("window (0): none")
