"""The scenario file: what the simulated gateway serves and how it misbehaves.

A YAML file validated by pydantic models; unknown keys are errors, and every error names the
key path (``symbols.2.prise: Extra inputs are not permitted``). ``load_scenario`` reads a
file, ``scenario_from_dict`` builds one in code (tests), ``Scenario.all_symbols`` expands
``extra_symbols`` into concrete symbol specs.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator

from common.yaml_file import YamlFileError, read_yaml_file
from tools.gateway_sim.dataset import DataSetError, MarketSpec, with_market_data
from tools.gateway_sim.timing import ClockSpec, EventSpec, Model

Seconds = Annotated[float, Field(ge=0, le=86_400)]
Pct = Annotated[float, Field(ge=0, le=100)]
HHMM_RANGE = re.compile(r"^\d\d:\d\d-\d\d:\d\d$")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ScenarioError(ValueError):
    """The scenario file is missing, not YAML, or does not validate."""


class PositionSpec(Model):
    symbol: str
    sec_type: Literal["STK", "OPT"] = "STK"
    quantity: float
    avg_cost: float = Field(ge=0)
    expiry: str = Field("", pattern=r"^(\d{8})?$")
    strike: float = Field(0.0, ge=0)
    right: Literal["", "C", "P"] = ""


def _default_account_values() -> dict[str, float]:
    return {
        "NetLiquidation": 100_000.0,
        "TotalCashValue": 100_000.0,
        "SettledCash": 100_000.0,
        "AvailableFunds": 95_000.0,
        "BuyingPower": 380_000.0,
        "ExcessLiquidity": 96_000.0,
        "EquityWithLoanValue": 100_000.0,
        "GrossPositionValue": 0.0,
        "InitMarginReq": 5_000.0,
        "MaintMarginReq": 4_000.0,
        "FullAvailableFunds": 95_000.0,
        "Cushion": 0.96,
        "DayTradesRemaining": -1.0,
        "Leverage": 0.0,
    }


class AccountSpec(Model):
    id: str = Field("DU1234567", pattern=r"^[A-Z]{1,3}\d{3,10}$")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    values: dict[str, float] = Field(default_factory=_default_account_values)
    positions: list[PositionSpec] = Field(default_factory=list)
    # wall seconds of the sim process (like stream_interval_s): IBKR refreshes the account
    # window's values about every 3 minutes, and pushes PnL (reqPnL) about once a second;
    # both are also pushed after every execution. P&L itself is computed (ledger.py).
    update_interval_s: float = Field(180.0, gt=0, le=86_400)
    pnl_interval_s: float = Field(1.0, gt=0, le=86_400)


class SessionSpec(Model):
    mode: Literal["always_open", "real"] = "always_open"
    timezone: str = "US/Eastern"
    liquid_hours: str = Field("09:30-16:00", pattern=HHMM_RANGE.pattern)
    trading_hours: str = Field("04:00-20:00", pattern=HHMM_RANGE.pattern)
    holidays: list[Annotated[str, Field(pattern=r"^\d{8}$")]] = Field(
        default_factory=lambda: ["20261126", "20261225"]
    )
    days_listed: int = Field(7, ge=1, le=60)
    # always_open: list the day this many days ahead as CLOSED too, so every hours string
    # carries a holiday for the client's parser (None: only the listed holidays)
    synthetic_holiday_in_days: int | None = Field(3, ge=1, le=60)
    # real mode only (always_open days stay 24 h): these days the regular session ends at
    # early_close_time and the extended one at early_close_trading_time (NYSE: 13:00 / 17:00)
    early_closes: list[Annotated[str, Field(pattern=r"^\d{8}$")]] = Field(default_factory=list)
    early_close_time: str = Field("13:00", pattern=HHMM.pattern)
    early_close_trading_time: str = Field("17:00", pattern=HHMM.pattern)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r}") from exc
        return name

    @model_validator(mode="after")
    def _early_close_inside_the_day(self) -> SessionSpec:
        # "HH:MM" strings of one width compare in time order
        opens, closes = self.liquid_hours.split("-")
        if not opens < self.early_close_time <= closes:
            raise ValueError(
                f"early_close_time {self.early_close_time} must fall in "
                f"the liquid hours {self.liquid_hours}"
            )
        if not self.early_close_time <= self.early_close_trading_time:
            raise ValueError("early_close_trading_time must not be before early_close_time")
        return self


class WaveSpec(Model):
    period_min: float = Field(gt=0, le=1_000_000)
    amplitude_pct: float = Field(ge=0, le=50)


class PathSpec(Model):
    """Log-price = envelope x fast waves + slow waves + interpolated minute noise."""

    fast_waves: list[WaveSpec] = Field(
        default_factory=lambda: [
            WaveSpec(period_min=37, amplitude_pct=0.20),
            WaveSpec(period_min=113, amplitude_pct=0.40),
        ]
    )
    slow_waves: list[WaveSpec] = Field(
        default_factory=lambda: [
            WaveSpec(period_min=467, amplitude_pct=0.5),
            WaveSpec(period_min=5011, amplitude_pct=1.0),
        ]
    )
    envelope_period_min: float = Field(300.0, gt=0)
    noise_pct: float = Field(0.03, ge=0, le=10)
    period_jitter: float = Field(0.25, ge=0, le=0.9)  # per-symbol stretch of the periods


class ChainSpec(Model):
    exchanges: list[str] = Field(default_factory=lambda: ["SMART", "CBOE", "AMEX"], min_length=1)
    daily_expiries: int = Field(0, ge=0, le=30)
    weekly_expiries: int = Field(6, ge=0, le=52)
    monthly_expiries: int = Field(3, ge=0, le=24)
    near_increment: float = Field(1.0, gt=0)
    near_range_pct: Pct = 22.0
    far_increment: float = Field(5.0, gt=0)
    far_range_pct: Pct = 60.0
    sparse_from_expiry: int = Field(2, ge=0)  # expiries at this index or later lose strikes
    sparse_increment: float = Field(5.0, gt=0)  # ... keeping only multiples of this near ATM
    missing_pct: Pct = 3.0  # ... and a hash-chosen share of the rest
    multiplier: int = Field(100, ge=1)
    min_tick: float = Field(0.01, gt=0)


# Exchange-traded funds with listed options that IBKR's contract details call stockType "ETF"
# (a symbol's own ``stock_type`` wins; any other symbol is "COMMON" unless it says otherwise)
KNOWN_ETFS = frozenset(
    {
        "SPY",
        "QQQ",
        "IWM",
        "DIA",
        "VOO",
        "IVV",
        "VTI",
        "EEM",
        "EFA",
        "GLD",
        "SLV",
        "TLT",
        "HYG",
        "LQD",
        "XLF",
        "XLE",
        "XLK",
        "XLV",
        "XLI",
        "XLY",
        "XLP",
        "XLU",
        "XLB",
        "SMH",
        "XBI",
        "KRE",
        "GDX",
        "USO",
        "ARKK",
    }
)


class SymbolSpec(Model):
    symbol: str = Field(pattern=r"^[A-Z][A-Z0-9.]{0,9}$")
    price: float = Field(gt=0)
    con_id: int | None = Field(None, ge=1)
    primary_exchange: str = "NASDAQ"
    long_name: str = ""
    industry: str = "Technology"
    # contractDetails stockType as IBKR spells it (COMMON, ETF, ADR, REIT, ...); None: ETF
    # for the funds in KNOWN_ETFS, COMMON otherwise
    stock_type: str | None = Field(None, pattern=r"^[A-Z][A-Z .-]{1,29}$")
    volatility: float = Field(0.25, gt=0, le=5)  # implied vol for option pricing
    spread_bps: float = Field(2.0, ge=0, le=10_000)
    option_spread_pct: float = Field(3.0, ge=0, le=200)
    volume_per_min: int = Field(20_000, ge=0)
    live_data: bool = True  # False: type 1 -> 354, type 3 -> delayed ticks + 10167
    options: bool = True
    chain: ChainSpec | None = None
    path: PathSpec | None = None
    events: list[EventSpec] = Field(default_factory=list)

    @property
    def listed_stock_type(self) -> str:
        """What contract details show as the stock's stockType."""
        if self.stock_type is not None:
            return self.stock_type
        return "ETF" if self.symbol in KNOWN_ETFS else "COMMON"


class ExtraSymbols(Model):
    count: int = Field(0, ge=0, le=2000)
    prefix: str = Field("SYM", pattern=r"^[A-Z]{1,6}$")
    price_min: float = Field(20.0, gt=0)
    price_max: float = Field(400.0, gt=0)
    options: bool = True


QuirkKind = Literal[
    "minus_one",
    "zero",
    "missing",
    "crossed",
    "wide",
    "no_last",
    "no_close",
    "no_greeks",
    "no_volume",
]


class QuirkSpec(Model):
    """Quote defects: -1 (no quote), 0, missing ticks (NaN in the client), crossed, wide."""

    symbol: str
    kind: QuirkKind
    sec_type: Literal["ANY", "STK", "OPT"] = "ANY"
    right: Literal["", "C", "P"] = ""
    strike: float | None = None
    expiry: str = Field("", pattern=r"^(\d{8})?$")
    every_nth_strike: int = Field(0, ge=0)  # OPT: only strikes whose grid index % n == 0
    factor: float = Field(10.0, gt=0)  # "wide": spread multiplied by this


FaultKind = Literal[
    "disconnect",
    "error",
    "no_market_data",
    "no_security_definition",
    "snapshot_never_ends",
    "historical_never_answers",
    "historical_refused",
]
SYMBOL_FAULTS = frozenset(
    {
        "no_market_data",
        "no_security_definition",
        "snapshot_never_ends",
        "historical_never_answers",
        "historical_refused",
    }
)
# historical_refused: error 162 with this text unless the fault gives its own ``message``
# (IBKR's answer for an exchange the account has no market-data subscription for)
HISTORICAL_REFUSED_TEXT = "No market data permissions for NYSE STK"


class FaultSpec(Model):
    """A timed event (disconnect, error code) or a symbol state that starts at its trigger."""

    kind: FaultKind
    at_s: Seconds | None = None  # seconds after the client connected
    after_mktdata_requests: int | None = Field(None, ge=0)
    until_s: Seconds | None = None  # symbol faults: stop applying after this
    client_id: int | None = None  # only for this client id
    every_connection: bool = False  # default: fires for the first matching connection only
    code: int | None = None
    message: str = ""
    req_id: int = -1
    symbol: str = ""
    sec_type: Literal["ANY", "STK", "OPT"] = "ANY"

    @model_validator(mode="after")
    def _consistent(self) -> FaultSpec:
        if self.at_s is not None and self.after_mktdata_requests is not None:
            raise ValueError("give at_s or after_mktdata_requests, not both")
        if self.kind == "error" and self.code is None:
            raise ValueError("kind 'error' needs a code")
        if self.kind == "no_market_data" and self.code not in (None, 354, 10167, 10168, 10197):
            raise ValueError("no_market_data code must be 354, 10167, 10168 or 10197")
        if self.kind in SYMBOL_FAULTS and not self.symbol:
            raise ValueError(f"kind {self.kind!r} needs a symbol")
        return self


class RulesSpec(Model):
    max_messages_per_s: int = Field(50, ge=1)
    # the rate window is 1 s minus this: ib_insync sends its next 45-message burst exactly
    # 1.000 s after the last, so arrival jitter alone must not count as a violation
    rate_window_tolerance_s: float = Field(0.05, ge=0, lt=0.5)
    drop_on_rate_violation: bool = True
    max_market_data_lines: int = Field(100, ge=1)
    historical_pacing: bool = False
    hist_identical_window_s: Seconds = 15.0
    hist_max_requests: int = Field(60, ge=1)
    hist_window_s: Seconds = 600.0
    hist_same_contract_max: int = Field(5, ge=1)  # more than this within 2 s -> 162
    hist_max_open: int = Field(50, ge=1)  # historical requests open at once; more -> 322
    duplicate_ticker_code: Literal[322, 102] = 322
    client_id_in_use_close_s: Seconds = 0.7


LatencyKind = Literal[
    "current_time",
    "contract_details",
    "sec_def",
    "historical",
    "market_data",
    "snapshot_end",
    "order",
    "account",
]


class LatencySpec(Model):
    """How long the gateway takes, per kind of request. IBKR: snapshot data in tens of ms,
    ``tickSnapshotEnd`` ~11 s after the request, historical bars in ~0.2-1 s."""

    default_s: Seconds = 0.0
    current_time_s: Seconds | None = None
    contract_details_s: Seconds | None = None
    sec_def_s: Seconds | None = None
    historical_s: Seconds | None = None
    market_data_s: Seconds | None = None  # request -> first ticks
    snapshot_end_s: Seconds | None = None  # first ticks -> tickSnapshotEnd (IBKR: ~11 s)
    order_s: Seconds | None = None
    account_s: Seconds | None = None
    # each request of a kind takes its latency plus a uniform draw from [0, spread] (seeded)
    spread_s: dict[LatencyKind, Seconds] = Field(default_factory=dict)

    def of(self, kind: str, rng: random.Random | None = None) -> float:
        value = getattr(self, f"{kind}_s")
        base = self.default_s if value is None else float(value)
        spread = self.spread_s.get(kind, 0.0)  # type: ignore[call-overload]
        return base + (rng.uniform(0.0, spread) if spread and rng is not None else 0.0)


class MarketDataSpec(Model):
    stream_interval_s: float = Field(1.0, gt=0, le=3600)


class RejectSpec(Model):
    """Orders the gateway refuses (error 201 with the reason), as IBKR does for margin, a
    trading permission or a closed-only contract."""

    symbol: str = ""  # "" = every symbol
    sec_type: Literal["ANY", "STK", "OPT"] = "ANY"
    action: Literal["", "BUY", "SELL"] = ""
    reason: str = (
        "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR "
        "EQUITY WITH LOAN VALUE [0 USD] MUST EXCEED THE INITIAL MARGIN"
    )


class OrdersSpec(Model):
    fill_mode: Literal["market", "immediate", "never"] = "market"
    match_interval_s: float = Field(0.25, gt=0, le=60)
    commission_per_contract: float = Field(0.65, ge=0)
    commission_per_share: float = Field(0.005, ge=0)
    min_commission: float = Field(1.0, ge=0)
    stock_margin_pct: Pct = 25.0
    short_option_margin_pct: Pct = 20.0
    next_order_id: int = Field(1, ge=1)
    # > 0: a marketable order fills at most this many contracts/shares per matcher pass, each
    # part its own execution (partial fills); 0: the whole remaining quantity at once
    max_fill_per_match: int = Field(0, ge=0)
    rejects: list[RejectSpec] = Field(default_factory=list)
    # IBKR's "Read-Only API" ticked: every order, what-if included, is refused with 321
    read_only_api: bool = False


class Scenario(Model):
    name: str = "default"
    seed: int = 7
    server_version: int = Field(176, ge=157, le=178)
    clock: ClockSpec = Field(default_factory=ClockSpec)
    farm_notices: list[int] = Field(default_factory=lambda: [2104, 2106, 2158])
    account: AccountSpec = Field(default_factory=AccountSpec)
    session: SessionSpec = Field(default_factory=SessionSpec)
    rules: RulesSpec = Field(default_factory=RulesSpec)
    latency: LatencySpec = Field(default_factory=LatencySpec)
    market_data: MarketDataSpec = Field(default_factory=MarketDataSpec)
    orders: OrdersSpec = Field(default_factory=OrdersSpec)
    path: PathSpec = Field(default_factory=PathSpec)
    chain: ChainSpec = Field(default_factory=ChainSpec)
    symbols: list[SymbolSpec] = Field(default_factory=list)
    extra_symbols: ExtraSymbols = Field(default_factory=ExtraSymbols)
    quirks: list[QuirkSpec] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)
    market: MarketSpec = Field(default_factory=MarketSpec)  # a data set's prices (dataset.py)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        names = [s.symbol for s in self.all_symbols()]
        if len(set(names)) != len(names):
            raise ValueError("symbols: a symbol is listed twice (or clashes with extra_symbols)")
        known = set(names)
        refs = [("quirks", i, q.symbol) for i, q in enumerate(self.quirks)]
        refs += [("faults", i, f.symbol) for i, f in enumerate(self.faults)]
        for key, i, symbol in refs:
            if symbol and symbol not in known:
                raise ValueError(f"{key}.{i}.symbol: unknown symbol {symbol!r}")
        return self

    def all_symbols(self) -> list[SymbolSpec]:
        """The listed symbols plus the generated SYM01..SYMnn."""
        return list(self.symbols) + _extra_symbols(self.extra_symbols, self.seed)


def _extra_symbols(extra: ExtraSymbols, seed: int) -> list[SymbolSpec]:
    width = max(2, len(str(extra.count)))
    out = []
    for i in range(1, extra.count + 1):
        frac = ((i * 2654435761 + seed * 40503) % 1000) / 999.0
        price = extra.price_min * (extra.price_max / extra.price_min) ** frac
        out.append(
            SymbolSpec(
                symbol=f"{extra.prefix}{i:0{width}d}",
                price=round(price, 2),
                long_name=f"SIMULATED COMPANY {i}",
                options=extra.options,
                volatility=0.2 + 0.3 * frac,
                spread_bps=3.0 + 10 * frac,
                chain=ChainSpec(
                    near_increment=1.0 if price < 150 else 2.5,
                    near_range_pct=15,
                    far_increment=5.0 if price < 150 else 10.0,
                    far_range_pct=40,
                    weekly_expiries=4,
                    monthly_expiries=2,
                ),
            )
        )
    return out


def scenario_from_dict(data: dict[str, Any]) -> Scenario:
    """Validate a dict; raise ScenarioError naming every bad key."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(describe_errors(exc)) from None
    try:
        return with_market_data(scenario) if scenario.market.source else scenario
    except DataSetError as exc:
        raise ScenarioError(str(exc)) from None


def load_scenario(path: str | Path) -> Scenario:
    file = Path(path)
    try:
        data = read_yaml_file(file)
    except YamlFileError as exc:
        raise ScenarioError(f"scenario {file}: {exc.problem}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario {file}: top level must be a mapping")
    market = data.get("market")
    for key in ("data", "recording"):  # a folder named relative to the scenario file
        if isinstance(market, dict) and isinstance(market.get(key), str):
            market[key] = str(file.parent / Path(market[key]).expanduser())
    try:
        return scenario_from_dict(data)
    except ScenarioError as exc:
        raise ScenarioError(f"scenario {file}: {exc}") from None


def describe_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # cross-field checks name their own key
            lines.append(message)
            continue
        key = ".".join(str(p) for p in err["loc"])
        bad = err.get("input")
        shown = "" if isinstance(bad, dict | list) else f" (got {bad!r})"
        lines.append(f"{key}: {message}{shown}")
    return "; ".join(lines)
