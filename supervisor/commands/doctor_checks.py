"""The ``doctor``'s verdicts: what a probe found (supervisor/broker/findings.py) -> check lines.

Pure functions over the findings and the settings, tested with hand-built inputs
(tests/test_doctor.py). Each check is one line starting ``ok``, ``warn``, ``fail`` or
``skip`` (a later check that cannot run after a failed one); a ``fail`` or ``warn`` says
what to change after ``fix:``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from common.config import PacingSettings
from supervisor.broker.findings import (
    CLIENT_ID_IN_USE,
    CONNECTED,
    NOT_A_GATEWAY,
    NOT_READY,
    REFUSED,
    GatewayFinding,
    SocketFinding,
    SymbolFinding,
)

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
PORTS = "IB Gateway paper 4002, live 4001; TWS paper 7497, live 7496"
API_SETTINGS = (
    'in IB Gateway/TWS under Configure > Settings > API > Settings tick "Enable ActiveX and '
    f'Socket Clients", set "Socket port" ({PORTS}) and match ibkr.port (or --port), and add '
    'this host to "Trusted IPs" (127.0.0.1 is trusted by default)'
)
NO_SUBSCRIPTION = frozenset({354, 10167, 10168, 10090})
SHARING = (
    "a paper account sees them only with market data sharing on (Client Portal: Settings > "
    "Paper Trading Account > share real-time market data)"
)
MAX_SKEW_S = 5.0  # reqCurrentTime has whole seconds; a few more is a clock to fix
IBKR_MESSAGES_PER_S = 50  # IBKR's hard limit; over it the gateway may disconnect (error 100)
IBKR_DEFAULT_LINES = 100  # market-data lines an account has without booster packs


@dataclass(frozen=True)
class Check:
    status: str  # ok | warn | fail | skip
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.status:<4} {self.name}: {self.detail}{fix}"


def socket_checks(found: SocketFinding) -> list[Check]:
    """Something listening at host:port, and answering the TWS API's handshake."""
    where = f"{found.host}:{found.port}"
    if found.outcome == REFUSED:
        return [
            Check(FAIL, "listening", f"nothing listening at {where} (connection refused)",
                  f"start IB Gateway or TWS and log in; {API_SETTINGS}"),
            Check(SKIP, "API handshake", "nothing listening"),
        ]  # fmt: skip
    if found.outcome != "answered":
        return [
            Check(FAIL, "listening", f"cannot reach {where}: {found.error}",
                  f"check ibkr.host (or --host) and any firewall in between; {API_SETTINGS}"),
            Check(SKIP, "API handshake", "nothing reached"),
        ]  # fmt: skip
    return [Check(OK, "listening", f"something listens at {where}"), handshake_check(found)]


def handshake_check(found: SocketFinding) -> Check:
    where = f"{found.host}:{found.port}"
    if found.kind == "api":
        return Check(OK, "API handshake", f"the TWS API, server version {found.server_version}")
    if found.kind == "not_api":
        return Check(
            FAIL,
            "API handshake",
            f"{where} answered {found.answer[:24]!r}: not an IBKR API port (another program "
            "holds it)",
            f"point ibkr.port (or --port) at the gateway's API port ({PORTS})",
        )
    if found.kind == "partial":
        return Check(
            FAIL,
            "API handshake",
            f"the answer from {where} was cut off mid-handshake",
            "run doctor again; if it persists, restart the gateway",
        )
    said = (
        "closed the connection without answering the API handshake"
        if found.closed
        else "accepted the connection but never answered the API handshake"
    )
    return Check(
        FAIL,
        "API handshake",
        f"{where} {said}: not an IBKR API port, or this host is not a trusted API client",
        f"{API_SETTINGS}; a gateway still starting or waiting for its login (2FA) answers "
        "once logged in",
    )


def connection_check(found: GatewayFinding) -> Check:
    """The bot's own connection: its client id free, the API ready."""
    cid = found.client_id
    if found.connect == CONNECTED:
        return Check(OK, "client id", f"client id {cid} is free; the API is ready")
    if found.connect == CLIENT_ID_IN_USE:
        return Check(
            FAIL,
            "client id",
            f"client id {cid} is in use (error 326)",
            "use another client id (ibkr.client_id or --client-id), or close the other "
            "session connected with it (another bot, a previous run the gateway still holds "
            "for up to a minute)",
        )
    fix = {
        NOT_READY: "log in to the gateway (it answers the handshake before its login and "
        f"2FA are done); {API_SETTINGS}",
        NOT_A_GATEWAY: f"point ibkr.port (or --port) at the gateway's API port ({PORTS})",
    }.get(found.connect, "see the error; run doctor again")
    return Check(FAIL, "client id", found.error, fix)


def account_check(accounts: Sequence[str], configured: str | None) -> Check:
    """Managed accounts, and paper or live: IBKR's paper account ids start with D (DU...).
    ``configured`` is ibkr.account; None: not the user's to fill (the simulator's accounts)."""
    if not accounts:
        return Check(
            FAIL, "accounts", "the gateway manages no account", "log in to the gateway again"
        )
    listed = ", ".join(accounts)
    if configured and configured not in accounts:
        return Check(
            FAIL,
            "accounts",
            f"ibkr.account {configured} is not among the managed accounts {listed}",
            f"set ibkr.account to one of {listed}, or log in with the account's user",
        )
    live = [a for a in accounts if not a.startswith("D")]
    kind = "LIVE (real money; paper account ids start with D)" if live else "(paper)"
    fixes = []
    if configured == "":
        fixes.append(
            f"fill in ibkr.account (or IBKR_ACCOUNT) with the account the bot trades, one of "
            f"the managed accounts {listed}: live mode refuses to trade without it"
        )
    if live:
        fixes.append(
            "for first runs log in to the paper account (IB Gateway paper port 4002); keep "
            "execution.mode: dry_run until phases and what-if pass"
        )
    if fixes:
        empty = "; ibkr.account is empty" if configured == "" else ""
        return Check(WARN, "accounts", f"{listed}: {kind}{empty}", "; ".join(fixes))
    return Check(OK, "accounts", f"{listed} {kind}")


def read_only_check(found: GatewayFinding) -> Check:
    """A what-if: IBKR refuses it, as every order, while "Read-Only API" is ticked."""
    if not found.what_if_tried:
        return Check(SKIP, "read-only API", "no option found to ask a what-if about")
    if not found.what_if_error:
        return Check(
            OK, "read-only API", f"orders allowed (what-if {found.what_if_tried} answered)"
        )
    if "read-only" in found.what_if_error.lower() or "read only" in found.what_if_error.lower():
        return Check(
            WARN,
            "read-only API",
            "what-if refused: the API is read-only, so whatif and live modes cannot work "
            "(dry_run can)",
            'untick "Read-Only API" in the gateway\'s API settings',
        )
    return Check(
        WARN,
        "read-only API",
        f"what-if {found.what_if_tried} refused: {found.what_if_error}",
        "check the account's trading permissions for options (Client Portal: Settings > "
        "Trading Permissions)",
    )


def clock_check(found: GatewayFinding, max_skew_s: float = MAX_SKEW_S) -> Check:
    if found.time_error or not math.isfinite(found.gateway_time):
        return Check(WARN, "clock", found.time_error or "no time from the gateway", "")
    skew = found.local_time - found.gateway_time
    # the gateway sends whole seconds: up to 1 s of the difference is its rounding
    if abs(skew) > max_skew_s + 1:
        side = "ahead of" if skew > 0 else "behind"
        return Check(
            WARN,
            "clock",
            f"this machine's clock is {abs(skew):.0f} s {side} the gateway's",
            "sync the clock (NTP: timedatectl set-ntp true); session times and expiries "
            "are judged on it",
        )
    return Check(OK, "clock", f"within {max(abs(skew), 1.0):.0f} s of the gateway's")


def market_data_fix(code: int, what: str, market_data_type: str) -> str:
    """Which subscription to buy for a 354/10167/10168 on ``what`` (stock or option)."""
    if code == 10197:
        return (
            "another session of this IBKR login (TWS, mobile, web) holds the market data: "
            "log it out, or give the bot a login of its own"
        )
    product = (
        "OPRA (US options) market data"
        if what == "option"
        else "US equities market data (e.g. US Securities Snapshot and Futures Value Bundle)"
    )
    tail = (
        ""
        if market_data_type.startswith("delayed")
        else ", or set ibkr.market_data_type: delayed (IBKR's free 15-minute delayed data)"
    )
    return f"subscribe to {product} in Client Portal; {SHARING}{tail}"


def symbol_checks(found: SymbolFinding, market_data_type: str) -> list[Check]:
    """One symbol: its stock contract, market data, option chain and one option quote."""
    s = found.symbol
    if found.stock_error:
        return [
            Check(FAIL, f"{s} contract", found.stock_error,
                  "check the symbol (universe.symbols or --symbol): IBKR lists no US stock "
                  "by that name on SMART"),
            *(Check(SKIP, f"{s} {step}", "no stock contract")
              for step in ("market data", "option chain", "option quote")),
        ]  # fmt: skip
    checks = [
        Check(OK, f"{s} contract", "a US stock on SMART"),
        quote_check(found, market_data_type),
    ]
    if found.chain_error:
        checks.append(
            Check(FAIL, f"{s} option chain", found.chain_error,
                  "trade a symbol with listed options, or check the account's permissions")
        )  # fmt: skip
        return [*checks, Check(SKIP, f"{s} option quote", found.skipped or "no option chain")]
    chain = f"{found.expirations} expirations, {found.strikes} strikes"
    checks.append(Check(OK, f"{s} option chain", chain))
    return [*checks, option_check(found, market_data_type)]


def quote_check(found: SymbolFinding, market_data_type: str) -> Check:
    name = f"{found.symbol} market data"
    if found.quote_error:
        code = found.quote_code
        if code in NO_SUBSCRIPTION or code == 10197:
            return Check(
                FAIL, name, found.quote_error, market_data_fix(code, "stock", market_data_type)
            )
        return Check(FAIL, name, found.quote_error, "run doctor again; see the error")
    price = f"price {found.price:.2f}" if math.isfinite(found.price) else "no price yet"
    if found.delayed:
        return Check(
            WARN, name, f"delayed (15 minutes old), {price}",
            market_data_fix(354, "stock", market_data_type) if market_data_type == "live"
            else "subscribe to US equities market data for live quotes; " + SHARING,
        )  # fmt: skip
    return Check(OK, name, f"live, {price}")


def option_check(found: SymbolFinding, market_data_type: str) -> Check:
    name = f"{found.symbol} option quote"
    if not found.option:
        return Check(SKIP, name, found.skipped or "no option to quote")
    if found.option_error:
        code = found.option_code
        if code in NO_SUBSCRIPTION or code == 10197 or "not subscribed" in found.option_error:
            fix = market_data_fix(code, "option", market_data_type)
        else:
            fix = "run doctor again; see the error"
        said = found.option_error
        detail = said if found.option in said else f"{found.option}: {said}"
        return Check(FAIL, name, detail, fix)
    bid, ask = found.option_bid, found.option_ask
    if not (bid > 0 and ask > 0):
        return Check(
            WARN, name, f"{found.option}: no bid and ask (bid {bid:g}, ask {ask:g})",
            "run doctor again while the market is open; closed, IBKR quotes no bid and ask",
        )  # fmt: skip
    delayed = " (delayed)" if found.option_delayed else ""
    return Check(OK, name, f"{found.option}: bid {bid:.2f}, ask {ask:.2f}{delayed}")


def pacing_checks(pacing: PacingSettings) -> list[Check]:
    """Within IBKR's limits: 50 messages a second, 100 market-data lines by default."""
    rate, lines = pacing.max_messages_per_s, pacing.max_market_data_lines
    checks = []
    if rate > IBKR_MESSAGES_PER_S:
        checks.append(Check(FAIL, "pacing", f"pacing.max_messages_per_s {rate:g} is over IBKR's "
                            f"{IBKR_MESSAGES_PER_S}/s (error 100, then a disconnect)",
                            "set pacing.max_messages_per_s: 45"))  # fmt: skip
    elif rate > 45:
        checks.append(Check(WARN, "pacing", f"pacing.max_messages_per_s {rate:g} leaves "
                            f"little margin under IBKR's {IBKR_MESSAGES_PER_S}/s",
                            "set pacing.max_messages_per_s: 45"))  # fmt: skip
    if lines > IBKR_DEFAULT_LINES:
        checks.append(Check(WARN, "pacing", f"pacing.max_market_data_lines {lines} is over "
                            f"the {IBKR_DEFAULT_LINES} lines an account has by default",
                            "keep it at 90 unless the account has bought more lines "
                            "(quote booster packs)"))  # fmt: skip
    if pacing.line_reserve >= lines:
        checks.append(Check(FAIL, "pacing", f"pacing.line_reserve {pacing.line_reserve} is "
                            f"not under pacing.max_market_data_lines {lines}",
                            "set pacing.line_reserve: 8"))  # fmt: skip
    if checks:
        return checks
    return [Check(OK, "pacing", f"{rate:g} messages/s (IBKR: {IBKR_MESSAGES_PER_S}), {lines} "
                  f"market-data lines (reserve {pacing.line_reserve})")]  # fmt: skip


def gateway_checks(
    socket: SocketFinding, gateway: GatewayFinding | None, configured_account: str | None,
    market_data_type: str, symbols: Sequence[str],
) -> list[Check]:  # fmt: skip
    """Every gateway check in order; what cannot run after a failure is ``skip``."""
    checks = socket_checks(socket)
    later = ["accounts", "read-only API", "clock", "symbols"]
    if gateway is None:
        return [*checks, *skipped(["client id", *later], symbols)]
    checks.append(connection_check(gateway))
    if gateway.connect != CONNECTED:
        return [*checks, *skipped(later, symbols)]
    checks += [account_check(gateway.accounts, configured_account), read_only_check(gateway),
               clock_check(gateway)]  # fmt: skip
    for found in gateway.symbols:
        checks += symbol_checks(found, market_data_type)
    return checks


def skipped(names: Sequence[str], symbols: Sequence[str]) -> list[Check]:
    return [
        Check(
            SKIP,
            name,
            "no API connection" + (f" ({', '.join(symbols)})" if name == "symbols" else ""),
        )
        for name in names
    ]


def failed(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if c.status == FAIL]
