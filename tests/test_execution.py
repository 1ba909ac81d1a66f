"""The one execution gate (supervisor/trading/execution.py): live needs every guard to agree."""

from __future__ import annotations

import pytest

from supervisor.trading.execution import live_refusal
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(30)


# --- live guards: each refuses on its own ----------------------------------------------------


def live_settings(tmp_path, account: str = "DU111", mode: str = "live"):
    return make_settings(tmp_path, execution={"mode": mode}, ibkr={"account": account})


def test_all_three_guards_agreeing_allows_live(tmp_path):
    assert live_refusal(live_settings(tmp_path), True, "ibkr", ["DU111"]) is None


def test_live_refused_without_the_flag(tmp_path):
    why = live_refusal(live_settings(tmp_path), False, "ibkr", ["DU111"])
    assert why is not None and "--live" in why


def test_live_refused_when_the_config_is_not_live(tmp_path):
    why = live_refusal(live_settings(tmp_path, mode="dry_run"), True, "ibkr", ["DU111"])
    assert why is not None and "execution.mode" in why


def test_live_refused_for_another_account(tmp_path):
    why = live_refusal(live_settings(tmp_path), True, "ibkr", ["DU999"])
    assert why is not None and "DU111" in why and "DU999" in why


def test_live_refused_without_a_configured_account(tmp_path):
    why = live_refusal(live_settings(tmp_path, account=""), True, "ibkr", ["DU111"])
    assert why is not None and "ibkr.account" in why


def test_live_refused_on_the_stub(tmp_path):
    why = live_refusal(live_settings(tmp_path), True, "stub", ["DU111"])
    assert why is not None and "IBKR" in why


def test_dry_run_without_the_flag_needs_no_guard(tmp_path):
    assert live_refusal(make_settings(tmp_path), False, "stub", ["STUB0001"]) is None
