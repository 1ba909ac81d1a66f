"""``doctor``'s verdicts (supervisor/commands/doctor_checks.py): hand-built findings -> lines."""

from __future__ import annotations

import math

import pytest

from common.config import PacingSettings
from supervisor import exitcodes
from supervisor.broker.findings import (
    ANSWERED,
    CLIENT_ID_IN_USE,
    CONNECTED,
    NOT_READY,
    REFUSED,
    GatewayFinding,
    SocketFinding,
    SymbolFinding,
)
from supervisor.commands.doctor import verdict
from supervisor.commands.doctor_checks import (
    FAIL,
    OK,
    SKIP,
    WARN,
    Check,
    account_check,
    clock_check,
    connection_check,
    gateway_checks,
    pacing_checks,
    read_only_check,
    socket_checks,
    symbol_checks,
)

pytestmark = pytest.mark.timeout(10)

API_ANSWER = (len(b"176\x0020261207 09:30:00 EST\x00")).to_bytes(4, "big") + (
    b"176\x0020261207 09:30:00 EST\x00"
)
ON_SIM = SocketFinding("127.0.0.1", 4002, ANSWERED, API_ANSWER, kind="api", server_version=176)
T = 1_796_650_200.0


def gateway(**changes: object) -> GatewayFinding:
    values: dict[str, object] = {
        "connect": CONNECTED,
        "client_id": 1,
        "accounts": ("DU1234567",),
        "what_if_tried": "BUY 1 SPY 20261211 600C LMT 0.05",
        "gateway_time": T,
        "local_time": T + 0.4,
        "symbols": (healthy("SPY"),),
    }
    values.update(changes)
    return GatewayFinding(**values)  # type: ignore[arg-type]


def healthy(symbol: str, **changes: object) -> SymbolFinding:
    values: dict[str, object] = {
        "price": 600.1,
        "expirations": 12,
        "strikes": 200,
        "option": f"{symbol} 20261211 600C",
        "option_bid": 4.1,
        "option_ask": 4.2,
    }
    values.update(changes)
    return SymbolFinding(symbol, **values)  # type: ignore[arg-type]


def statuses(checks: list[Check]) -> list[str]:
    return [c.status for c in checks]


def test_nothing_listening_fails_naming_the_socket_clients_setting_and_the_ports() -> None:
    checks = socket_checks(SocketFinding("127.0.0.1", 4002, REFUSED, error="connection refused"))
    assert statuses(checks) == [FAIL, SKIP]
    line = checks[0].line()
    assert line.startswith("fail listening: nothing listening at 127.0.0.1:4002")
    assert "Enable ActiveX and Socket Clients" in line and "Trusted IPs" in line
    for port in ("4002", "4001", "7497", "7496"):
        assert port in line


def test_an_answer_that_is_not_the_api_fails_as_not_an_ibkr_api_port() -> None:
    http = SocketFinding("127.0.0.1", 8080, ANSWERED, b"HTTP/1.1 400 Bad", kind="not_api")
    checks = socket_checks(http)
    assert statuses(checks) == [OK, FAIL]
    assert "not an IBKR API port" in checks[1].detail and "HTTP/1.1" in checks[1].detail


def test_a_port_that_closes_without_answering_points_at_trusted_ips() -> None:
    closed = SocketFinding("10.0.0.5", 4002, ANSWERED, b"", closed=True, kind="nothing")
    check = socket_checks(closed)[1]
    assert check.status == FAIL and check.detail == (
        "10.0.0.5:4002 closed the connection without answering the API handshake: not an "
        "IBKR API port, or this host is not a trusted API client"
    )
    assert "Trusted IPs" in check.fix
    silent = SocketFinding("10.0.0.5", 4002, ANSWERED, b"", closed=False, kind="nothing")
    assert socket_checks(silent)[1].detail.startswith(  # said once, in plain words
        "10.0.0.5:4002 accepted the connection but never answered the API handshake: "
    )


def test_the_api_handshake_is_ok_with_its_server_version() -> None:
    assert [c.line() for c in socket_checks(ON_SIM)] == [
        "ok   listening: something listens at 127.0.0.1:4002",
        "ok   API handshake: the TWS API, server version 176",
    ]


def test_client_id_in_use_fails_with_the_fix() -> None:
    check = connection_check(gateway(connect=CLIENT_ID_IN_USE, error="in use"))
    assert check.status == FAIL and "client id 1 is in use (error 326)" in check.detail
    assert "another client id" in check.fix and "close the other session" in check.fix


def test_a_gateway_not_logged_in_fails_saying_to_log_in() -> None:
    check = connection_check(gateway(connect=NOT_READY, error="not ready within 10s"))
    assert check.status == FAIL and check.fix.startswith("log in to the gateway")


def test_paper_accounts_are_ok_live_ones_warn_and_a_missing_configured_one_fails() -> None:
    assert account_check(["DU1234567"], "DU1234567").line() == "ok   accounts: DU1234567 (paper)"
    assert account_check(["DU1234567"], None).status == OK  # the simulator's: nothing to fill
    live = account_check(["U7654321"], "U7654321")
    assert live.status == WARN and "LIVE" in live.detail
    missing = account_check(["DU1234567"], "DU999")
    assert missing.status == FAIL and "DU1234567" in missing.fix
    assert account_check([], "").status == FAIL


def test_an_empty_configured_account_warns_naming_the_managed_ones() -> None:
    # init leaves ibkr.account empty; doctor said "ok accounts" and nobody filled it in
    empty = account_check(["DU1234567", "DU7654321"], "")
    assert empty.status == WARN and "ibkr.account is empty" in empty.detail
    assert empty.fix.startswith("fill in ibkr.account") and "DU1234567, DU7654321" in empty.fix
    live = account_check(["U7654321"], "")
    assert live.status == WARN and "LIVE" in live.detail and "fill in ibkr.account" in live.fix
    assert "paper port 4002" in live.fix


def test_read_only_api_warns_with_untick_read_only() -> None:
    refused = gateway(
        what_if_error="what-if ...: error 321: Error validating request.-'bN' : cause - The "
        "API interface is currently in Read-Only mode.",
        what_if_code=321,
    )
    check = read_only_check(refused)
    assert check.status == WARN and 'untick "Read-Only API"' in check.fix
    assert read_only_check(gateway()).status == OK
    assert read_only_check(gateway(what_if_tried="")).status == SKIP


def test_clock_skew_over_a_few_seconds_warns() -> None:
    assert clock_check(gateway()).status == OK
    behind = clock_check(gateway(local_time=T - 30))
    assert behind.status == WARN and "30 s behind" in behind.detail and "NTP" in behind.fix
    # whole seconds from the gateway: its rounding is not a skew
    assert clock_check(gateway(local_time=T + 5.9)).status == OK
    assert clock_check(gateway(gateway_time=math.nan, time_error="no answer")).status == WARN


@pytest.mark.parametrize(
    ("code", "wanted"),
    [(354, "US equities"), (10168, "US equities"), (10167, "US equities")],
)
def test_no_stock_subscription_fails_naming_what_to_buy(code: int, wanted: str) -> None:
    found = healthy("SPY", quote_error=f"quote SPY: error {code}: not subscribed", quote_code=code)
    check = symbol_checks(found, "live")[1]
    assert check.status == FAIL and wanted in check.fix
    assert "market data sharing" in check.fix and "ibkr.market_data_type: delayed" in check.fix


def test_no_options_subscription_fails_naming_opra() -> None:
    found = healthy(
        "SPY", option_error="option SPY ...: error 354: not subscribed", option_code=354
    )
    check = symbol_checks(found, "delayed")[3]
    assert check.status == FAIL and "OPRA" in check.fix
    assert "market_data_type" not in check.fix  # already delayed: no point suggesting it


def test_delayed_data_warns_and_an_unknown_symbol_skips_its_later_steps() -> None:
    assert symbol_checks(healthy("SPY", delayed=True), "delayed")[1].status == WARN
    unknown = symbol_checks(
        SymbolFinding("SPYY", stock_error="SPYY: error 200: no security definition"), "live"
    )
    assert statuses(unknown) == [FAIL, SKIP, SKIP, SKIP]
    assert "universe.symbols" in unknown[0].fix


def test_no_chain_fails_and_skips_the_option_quote() -> None:
    found = SymbolFinding("XYZ", price=10.0, chain_error="chain XYZ: IBKR lists no options")
    assert statuses(symbol_checks(found, "live")) == [OK, OK, FAIL, SKIP]


def test_an_option_without_bid_and_ask_warns() -> None:
    check = symbol_checks(healthy("SPY", option_bid=math.nan, option_ask=math.nan), "live")[3]
    assert check.status == WARN and "market is open" in check.fix


def test_pacing_within_limits_is_ok_and_out_of_them_is_said() -> None:
    assert statuses(pacing_checks(PacingSettings())) == [OK]
    near = pacing_checks(PacingSettings(max_messages_per_s=50, max_market_data_lines=200))
    assert statuses(near) == [WARN, WARN]
    # the settings model stops a rate over 50; the check holds on its own all the same
    over = PacingSettings.model_construct(
        max_messages_per_s=60.0, max_market_data_lines=90, line_reserve=90
    )
    assert statuses(pacing_checks(over)) == [FAIL, FAIL]


def test_everything_healthy_is_all_ok_and_exit_0() -> None:
    checks = gateway_checks(ON_SIM, gateway(), "DU1234567", "live", ["SPY"])
    assert all(c.status == OK for c in checks), [c.line() for c in checks]
    assert len(checks) == 3 + 3 + 4
    assert verdict(checks) == exitcodes.OK


def test_later_checks_skip_after_a_failed_connection_and_the_exit_says_cannot_connect() -> None:
    refused = SocketFinding("127.0.0.1", 4002, REFUSED, error="connection refused")
    checks = gateway_checks(refused, None, "", "live", ["SPY", "QQQ"])
    assert statuses(checks) == [FAIL] + [SKIP] * 6
    assert checks[-1].line() == "skip symbols: no API connection (SPY, QQQ)"
    assert verdict(checks) == exitcodes.CANNOT_CONNECT
    in_use = gateway_checks(ON_SIM, gateway(connect=CLIENT_ID_IN_USE), "", "live", ["SPY"])
    assert statuses(in_use) == [OK, OK, FAIL, SKIP, SKIP, SKIP, SKIP]


def test_a_failed_symbol_check_is_exit_6_and_warnings_alone_are_exit_0() -> None:
    bad = gateway(symbols=(healthy("SPY", quote_error="error 354", quote_code=354),))
    assert verdict(gateway_checks(ON_SIM, bad, "", "live", ["SPY"])) == exitcodes.CHECKS_FAILED
    live = gateway(accounts=("U123",))
    assert verdict(gateway_checks(ON_SIM, live, "", "live", ["SPY"])) == exitcodes.OK


def test_the_socket_probe_reads_the_handshake_answer_and_its_server_version() -> None:
    from supervisor.broker.ibkr.probes import answered

    api = answered("127.0.0.1", 4002, API_ANSWER, closed=False)
    assert (api.kind, api.server_version) == ("api", 176)
    assert answered("h", 1, b"SSH-2.0-OpenSSH_9.6\r\n", closed=False).kind == "not_api"
    assert answered("h", 1, b"", closed=True).kind == "nothing"


def test_the_option_asked_about_is_the_first_expiry_from_today_nearest_the_price() -> None:
    from common.messages import OptionChain
    from supervisor.broker.ibkr.probes import pick_option

    chain = OptionChain("SPY", ("20261130", "20261202", "20261204"), (595.0, 600.0, 605.0))
    today = 1_796_139_000.0  # 2026-12-01 10:30 EST
    picked = pick_option(chain, 601.0, today)
    assert picked is not None and picked.key == "SPY 20261202 600C"
    middle = pick_option(chain, math.nan, today)
    assert middle is not None and middle.strike == 600.0
    assert pick_option(OptionChain("SPY", ("20261130",), (600.0,)), 600.0, today) is None


def test_a_failure_keeps_its_code_and_loses_the_adapters_hint() -> None:
    from supervisor.broker.base import SymbolDataError
    from supervisor.broker.ibkr import errors
    from supervisor.broker.ibkr.probes import _code, _text

    wrapped = SymbolDataError(
        "no option of 1 quoted; first: option SPY 20261202 600C: error 354: Requested market "
        f"data is not subscribed. ({errors.hint(354)})"
    )
    assert _code(wrapped) == 354
    assert _text(wrapped) == (
        "option SPY 20261202 600C: error 354: Requested market data is not subscribed."
    )
