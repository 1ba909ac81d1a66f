"""The settings, as pydantic models carrying their limits on the fields.

Unknown keys are errors; every value is checked where it is declared (a real time zone, real
times, limits the code needs), so ``validate`` passing means ``run`` will not trip on it.
Reading the file and turning errors into lines lives in ``common.settings_file``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

# where the files are (package data, the state folder) is common.locations' business
from common.locations import DEFAULT_CONFIG as DEFAULT_CONFIG
from common.locations import HOME_ENV as HOME_ENV
from common.locations import PROJECT_ROOT as PROJECT_ROOT

Pct = Annotated[float, Field(ge=0, le=100)]


def auto_or(kind: type[int] | type[float], low: float, high: float) -> Callable[[object], object]:
    """A value that is "auto" or a number of ``kind`` in [low, high], with one clear error."""
    word = "a whole number" if kind is int else "a number"

    def check(value: object) -> object:
        if value == "auto":
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
            or (kind is int and value != int(value))
        ):
            raise ValueError(f"should be auto or {word} from {low:g} to {high:g}")
        return kind(value)

    return check


PositiveS = Annotated[float, Field(gt=0, le=86_400)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IBKRSettings(Model):
    host: str = "127.0.0.1"
    port: int = Field(4002, ge=1, le=65_535)
    client_id: int = Field(1, ge=0, le=2**31 - 1)
    account: str = ""  # the account live mode must see; empty = none configured
    connect_timeout_s: PositiveS = 10.0
    request_timeout_s: PositiveS = 15.0
    market_data_type: Literal["live", "frozen", "delayed", "delayed_frozen"] = "live"
    snapshot_timeout_s: float = Field(11.0, gt=0, le=120)  # real gateways end one in <= ~11 s
    # how a quote is taken: a snapshot (left to end, or cancelled once complete when lines
    # run short) or a stream cancelled once complete (6 % slower, docs/benchmarks.md); the
    # snapshot is also the safer: a cancel lost to a drop still ends by itself
    quote_mode: Literal["snapshot", "stream"] = "snapshot"
    # true: the first symbol without a live subscription (354/10168) switches the connection
    # to delayed data (IBKR still sends live data where it is subscribed) and is asked again;
    # its quotes then carry their 15-minute age. false: such a symbol fails, saying so
    delayed_fallback: bool = False
    historical_timeout_s: float = Field(12.0, gt=0, le=300)
    client_id_attempts: int = Field(3, ge=1, le=32)  # 326 "in use": client_id, +1, +2 ...
    # a reconnect keeps its client id this long (326 while the gateway still holds the dead
    # socket) before trying the next: only the placing client id may cancel an order
    reconnect_same_client_id_s: float = Field(120.0, ge=0, le=3600)
    # a gateway's daily restart takes 1-3 minutes: probe often enough that cycles resume
    # within seconds of it answering again (a refused loopback connect costs nothing)
    reconnect_initial_s: float = Field(1.0, gt=0, le=60)  # backoff: doubles per failure
    reconnect_max_s: float = Field(5.0, gt=0, le=60)
    reconnect_jitter: float = Field(0.25, ge=0, le=1)  # +- this fraction of each delay
    # after this many failed connects in a row, probe only every circuit_cooldown_s: it
    # slows the probing, it never holds a reachable gateway off for minutes
    circuit_failures: int = Field(5, ge=1, le=1000)
    circuit_cooldown_s: float = Field(10.0, gt=0, le=60)
    # `run` started before the gateway answers waits for it on the reconnect policy this
    # long, then exits 3 (0: until it answers; at most a week); check, reconcile and phases
    # fail at once
    connect_wait_s: float = Field(0.0, ge=0, le=604_800)
    # a gateway that stops answering with its socket open (hung, stopped) is a lost
    # connection: waiting probe_after_s with nothing heard, the link holds its writes and
    # asks for the time (reqCurrentTime); no answer within probe_timeout_s and the socket is
    # reset and reconnected (supervisor/broker/ibkr/liveness.py)
    probe_after_s: float = Field(2.0, gt=0, le=60)
    probe_timeout_s: float = Field(5.0, gt=0, le=60)


class UniverseSettings(Model):
    symbols: list[str] = Field(default_factory=lambda: ["SPY", "QQQ", "AAPL"], min_length=1)
    # auto: sized from the pace and the market-data lines (supervisor/runtime/budget.py)
    max_concurrent_symbols: Annotated[
        int | Literal["auto"], PlainValidator(auto_or(int, 1, 1000))
    ] = "auto"

    @field_validator("symbols")
    @classmethod
    def _clean_symbols(cls, symbols: list[str]) -> list[str]:
        cleaned = [s.strip().upper() for s in symbols]
        bad = [s for s in cleaned if not s or not s.replace(".", "").replace(" ", "").isalnum()]
        if bad:
            raise ValueError(f"not a ticker symbol: {bad}")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("symbols are listed more than once")
        return cleaned


class ScheduleSettings(Model):
    interval_s: float = Field(60.0, ge=0, le=86_400)
    cycles: int = Field(0, ge=0)  # 0 = run until stopped
    max_runtime_s: float = Field(0.0, ge=0)  # 0 = no limit; else stop after this long
    # auto: grows with the universe, the first cycle of the day included (budget.py)
    cycle_deadline_s: Annotated[
        float | Literal["auto"], PlainValidator(auto_or(float, 1, 86_400))
    ] = "auto"
    regular_hours_only: bool = True
    # the sessions where the broker publishes none: NYSE's (holidays and early closes), or
    # open_time-close_time on weekdays in ``timezone``
    calendar: Literal["XNYS", "weekdays"] = "XNYS"
    timezone: str = "America/New_York"  # for calendar: weekdays, and how reports show times
    open_time: str = "09:30"  # calendar: weekdays only
    close_time: str = "16:00"

    @field_validator("timezone")
    @classmethod
    def _real_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone (e.g. America/New_York)") from None
        return name

    @field_validator("open_time", "close_time")
    @classmethod
    def _real_time(cls, value: str) -> str:
        hours, sep, minutes = value.partition(":")
        if not (
            sep
            and len(hours) == len(minutes) == 2
            and hours.isdigit()
            and minutes.isdigit()
            and int(hours) < 24
            and int(minutes) < 60
        ):
            raise ValueError("not a time of day as HH:MM (00:00-23:59)")
        return value

    @model_validator(mode="after")
    def _open_before_close(self) -> ScheduleSettings:
        if self.open_time >= self.close_time:
            raise ValueError(
                f"open_time ({self.open_time}) must be before close_time ({self.close_time})"
            )
        return self


class WorkerSettings(Model):
    count: int = Field(2, ge=1, le=64)
    start_timeout_s: PositiveS = 30.0
    max_respawns_per_minute: int = Field(5, ge=0, le=1000)
    # a pipeline step (the strategy's code on one symbol) running longer than this: the
    # worker is stuck, killed and replaced; that symbol fails, its others are retried once
    step_timeout_s: float = Field(20.0, gt=0, le=3600)
    # a worker is replaced after this many symbol tasks (0: never), as CPython's
    # max_tasks_per_child: whatever a strategy leaks is given back
    max_tasks_per_worker: int = Field(0, ge=0)


class ScalpSettings(Model):
    ema_fast: int = Field(8, ge=1, le=500)
    ema_slow: int = Field(21, ge=2, le=1000)
    rsi_period: int = Field(14, ge=2, le=500)
    rsi_buy_low: Pct = 45.0  # BUY needs RSI inside [rsi_buy_low, rsi_buy_high]
    rsi_buy_high: Pct = 75.0
    rsi_sell_floor: Pct = 35.0  # RSI under this is SELL
    bars_minutes: int = Field(120, ge=10, le=1440)

    @model_validator(mode="after")
    def _ordered(self) -> ScalpSettings:
        if self.ema_fast >= self.ema_slow:
            raise ValueError(f"ema_fast ({self.ema_fast}) must be below ema_slow ({self.ema_slow})")
        if self.rsi_buy_low > self.rsi_buy_high:
            raise ValueError("rsi_buy_low must not exceed rsi_buy_high")
        return self


class WhaleSettings(Model):
    enabled: bool = True
    lookback_bars: int = Field(20, ge=2, le=500)  # 60-minute bars
    volume_spike: float = Field(1.5, ge=1.0, le=100.0)  # times the average volume
    debounce_days: float = Field(3.0, ge=0, le=365)


class StrategySettings(Model):
    name: str = "scalp_whale"  # or a dotted path "package.module:Class"
    extended_hours: bool = False  # True: signals also see pre- and post-market bars
    scalp: ScalpSettings = ScalpSettings()
    whale: WhaleSettings = WhaleSettings()


EXPIRY_RULES = ("nearest", "weekly", "dte_window")


class OptionsSettings(Model):
    # nearest: the first listed expiry at least min_dte away; weekly: the last listed expiry
    # of the first week that has one (Friday, or Thursday before a holiday); dte_window: the
    # nearest listed expiry inside [min_dte, max_dte]
    expiry_rule: Literal["nearest", "weekly", "dte_window"] = "weekly"
    min_dte: int = Field(1, ge=0, le=3650)  # 0 allows same-day expiries (0-DTE)
    max_dte: int = Field(7, ge=0, le=3650)  # dte_window only
    # a same-day expiry (min_dte 0) is chosen only with at least this long to its close
    min_minutes_to_expiry: float = Field(60.0, ge=0, le=1440)
    moneyness: Literal["atm", "itm", "otm"] = "atm"
    strikes_each_side: int = Field(5, ge=0, le=100)
    strike_count: int = Field(3, ge=1, le=50)
    max_spread_pct: Pct = 15.0  # of mid
    min_volume: int = Field(0, ge=0)
    entry_price: Literal["mid", "ask", "bid"] = "mid"
    take_profit_pct: float = Field(50.0, gt=0, le=1000)
    stop_loss_pct: float = Field(30.0, gt=0, le=100)

    @field_validator("expiry_rule", mode="before")
    @classmethod
    def _renamed(cls, rule: object) -> object:
        if rule == "nearest_weekly":
            raise ValueError(
                "'nearest_weekly' was renamed: use 'nearest' (the first listed "
                "expiry, a same-day one only with min_dte 0) or 'weekly' (the "
                "week's last listed expiry)"
            )
        return rule

    @model_validator(mode="after")
    def _dte(self) -> OptionsSettings:
        if self.min_dte > self.max_dte:
            raise ValueError(f"min_dte ({self.min_dte}) exceeds max_dte ({self.max_dte})")
        return self


PriceSource = Literal["mid", "last", "close"]
DEFAULT_SOURCES: tuple[PriceSource, ...] = ("mid", "last", "close")


class QuoteSettings(Model):
    price_sources: list[PriceSource] = Field(
        default_factory=lambda: list(DEFAULT_SOURCES), min_length=1
    )
    # the ATM's price on BUY/SELL: the snapshot, or the last bar's close (no snapshot; see
    # docs/strategy-and-risk.md)
    underlying_price: Literal["snapshot", "last_bar"] = "snapshot"
    max_spread_pct: Pct = 2.0  # wider underlying markets are flagged "wide"


class RiskSettings(Model):
    risk_per_trade_pct: float = Field(1.0, gt=0, le=100)
    max_contracts_per_order: int = Field(10, ge=1)
    max_position_per_symbol: int = Field(20, ge=1)  # contracts open or pending, per underlying
    max_position_total: int = Field(100, ge=1)
    max_orders_per_cycle: int = Field(5, ge=0)
    max_orders_per_day: int = Field(50, ge=0)
    max_notional_pct: float = Field(10.0, gt=0, le=100)  # premium outlay of one order vs net liq
    max_quote_age_s: float = Field(30.0, gt=0)  # an option quote older than this is stale
    daily_loss_limit_pct: float = Field(3.0, gt=0, le=100)
    daily_loss_limit_abs: float = Field(0.0, ge=0)  # 0 = only the % limit applies
    # the entry window: no entries in the first / last minutes of each symbol's session
    no_entries_after_open_min: float = Field(5.0, ge=0, le=390)
    no_entries_before_close_min: float = Field(15.0, ge=0, le=390)
    # every position is closed this long before its expiry's close (paper at the bid, live
    # with a closing limit order); entries closer to their expiry than this are refused
    exit_before_expiry_min: float = Field(15.0, ge=1, le=390)
    # re-entry: one open position (or working entry) per symbol and direction; the same
    # contract may be entered again once its position has closed
    one_position_per_direction: bool = True
    reenter_after_close: bool = True


class ExecutionSettings(Model):
    mode: Literal["dry_run", "whatif", "live"] = "dry_run"
    entry_timeout_s: PositiveS = 300.0  # an unfilled entry is cancelled after this
    # a stop inside an expiry's exit window closes the positions held in it before exit
    close_expiring_on_stop: bool = True
    # live, at start: a held position whose bracket lacks its take-profit or its stop at
    # IBKR gets the missing exit placed again (replace) or is sold at the bid (close)
    incomplete_bracket: Literal["replace", "close"] = "replace"
    # live: a stop cancels our entries still working at IBKR (exits of held positions stay)
    cancel_entries_on_stop: bool = True
    # live: shares an exercise of one of our options delivered are closed at the next regular
    # session (DAY limit at the bid, or the ask for a buy-back); false: held, counted, reported
    close_exercised_shares: bool = True
    # one journal per broker ({broker}: stub | sim | ibkr): the stub's simulated days can never
    # mix with a real account's; the journal also remembers its account and refuses another
    journal_path: str = "var/journal-{broker}.sqlite"

    @field_validator("journal_path")
    @classmethod
    def _only_known_fields(cls, value: str) -> str:
        try:
            value.format(broker="stub")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{broker}} may be filled in ({exc!r})") from None
        return value


# the pacing governor's slots per second, as a share of max_messages_per_s (see pacing.py)
PACING_SLOT_SHARE = 0.985


class PacingSettings(Model):
    # IBKR's hard limit is 50 in any second; 45 leaves five of margin for what the gateway's
    # count adds (jitter, stalls; see pacing.py); the governor's slots run 1.5 % under it
    # (44.3/s). The connect handshake alone sends 8 messages in one burst
    max_messages_per_s: float = Field(45.0, ge=10, le=50)
    max_market_data_lines: int = Field(90, ge=1, le=10_000)
    # a complete snapshot is left to end by itself (no message) while this many lines are
    # free, else cancelled (one message, the line back now); measured in docs/benchmarks.md
    line_reserve: int = Field(8, ge=1, le=10_000)


class MonitoringSettings(Model):
    interval_s: PositiveS = 30.0
    metrics_path: str = "var/metrics.jsonl"
    rotate_bytes: int = Field(50_000_000, ge=10_000)  # the metrics file rolls over past this
    keep_files: int = Field(5, ge=1, le=100)
    gateway_log_path: str = ""  # the gateway's own log, to count its buffer warnings
    memory_growth_alert_mb_per_h: float = Field(50.0, gt=0)
    # the status endpoint on 127.0.0.1: /healthz and /metrics (Prometheus); 0 = off
    http_port: int = Field(0, ge=0, le=65_535)
    # the bearer token of POST /api/pause|resume|flatten|kill (``${ENV}`` allowed); unset: a
    # new one at each start in control.token beside the journal (mode 0600)
    control_token: SecretStr | None = None
    # the IPv4 address the status endpoint and the dashboard listen on: 127.0.0.1, this
    # machine only; another (0.0.0.0: every interface) only with control_token set, as the
    # generated token's file is on this machine only
    bind: str = "127.0.0.1"

    @field_validator("bind")
    @classmethod
    def _ipv4(cls, bind: str, info: ValidationInfo) -> str:
        try:
            address = ipaddress.IPv4Address(bind)
        except ValueError:
            raise ValueError("not an IPv4 address (127.0.0.1, 0.0.0.0, 192.168.1.5)") from None
        token = info.data.get("control_token")  # declared above: already checked
        if not address.is_loopback and not (token and token.get_secret_value()):
            raise ValueError(
                "serves the dashboard and the controls beyond this machine: set "
                "monitoring.control_token (e.g. ${BOT_CONTROL_TOKEN}) or bind 127.0.0.1"
            )
        return bind


class AlertsSettings(Model):
    """Where alerts go. URLs and tokens are secrets: they never appear in logs."""

    discord_webhook: SecretStr | None = None
    slack_webhook: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str = ""
    telegram_api: str = "https://api.telegram.org"  # overridable so tests use loopback
    webhook_url: SecretStr | None = None  # generic JSON POST
    heartbeat_url: SecretStr | None = None  # pinged (GET) every heartbeat_interval_s
    # also while the market is closed, so a dead-man monitor fires only when something is wrong
    heartbeat_interval_s: float = Field(60.0, ge=1, le=3600)
    timeout_s: float = Field(5.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=10)
    queue_size: int = Field(1000, ge=1)  # per channel; beyond it alerts are dropped, and counted
    # refusals by one risk rule (or IBKR's rejections) alerted at most once per this many
    # minutes, with the count held back (trading/refusal_alerts.py); 0: none alerted
    refusal_every_min: float = Field(60.0, ge=0, le=1440)
    # a connection lost mid-run for this long is an outage: alerted once (not again by a
    # restart during it), and its end once (runtime/outages.py)
    outage_after_s: float = Field(120.0, ge=0, le=86_400)
    # the day's summary (trades, P&L, refusals by rule, health) alerted after the session's
    # close, once a day (runtime/day_end.py)
    day_summary: bool = True
    # the Telegram command bot (/status, /pause, /flatten …: runtime/telegram_commands.py),
    # off by default; it answers only the chats listed (their numeric ids) and needs the token
    telegram_commands: bool = False
    telegram_allowed_chats: list[int] = Field(default_factory=list)
    # and, when set, only these users (their numeric ids, Telegram's from.id) in those chats:
    # without it, every member of an allowed group chat may /pause or /flatten
    telegram_allowed_users: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _commands_need_a_bot_and_a_chat(self) -> AlertsSettings:
        if self.telegram_commands and self.telegram_bot_token is None:
            raise ValueError("telegram_commands needs telegram_bot_token (the bot to poll)")
        if self.telegram_commands and not self.telegram_allowed_chats:
            raise ValueError(
                "telegram_commands needs telegram_allowed_chats: the chat ids it may answer "
                "(none listed would answer nobody)"
            )
        return self


class RecordingSettings(Model):
    """The flight recorder (supervisor/recording/): every broker answer, order event and
    cycle of a ``run`` on the sim or ibkr market, as Parquet files (never on the stub)."""

    enabled: bool = True
    # one folder per run inside it, <market>-<start, UTC>; relative: anchored like the journal
    dir: str = "var/recordings"
    # recordings that started more than this many days ago are deleted at a run's start;
    # 0 keeps every one
    keep_days: int = Field(30, ge=0, le=36_500)


class BacktestSettings(Model):
    """``backtest`` (supervisor/backtest/): the market a data folder does not give. Options
    without quotes in the folder are priced by Black-Scholes at ``iv`` (DIR/IV.csv wins for
    the days it lists), bid and ask ``option_half_spread`` of the price either side (at
    least a cent); the account starts at ``equity``."""

    iv: float = Field(0.20, gt=0, le=5)  # a fraction: 0.20 is 20 %
    option_half_spread: float = Field(0.02, ge=0, le=0.5)  # of the model price
    equity: float = Field(100_000.0, gt=0)


class LoggingSettings(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_path: str = "var/bot.jsonl"
    console: bool = True


class StubSettings(Model):
    """The in-memory broker: a seeded, replayed session on a simulated clock."""

    seed: int = 7
    start: datetime = datetime(2026, 1, 8, 10, 30, tzinfo=timezone(timedelta(hours=-5)))
    base_prices: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    latency_s: float = Field(0.0, ge=0, le=60)
    equity: float = Field(100_000.0, gt=0)
    # TEST ONLY: keep this many bytes per request forever, a deliberate leak the soak report
    # must catch. Never set it in a real settings file.
    leak_bytes_per_request: int = Field(0, ge=0, le=10_000_000)

    @field_validator("start")
    @classmethod
    def _aware(cls, start: datetime) -> datetime:
        if start.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-01-08T10:30:00-05:00")
        return start


class Settings(Model):
    # the market the commands use unless --broker / --sim says otherwise: stub (in memory),
    # sim (the simulated gateway, started on a free port) or ibkr (the gateway in ibkr:)
    broker: Literal["stub", "sim", "ibkr"] = "stub"
    ibkr: IBKRSettings = IBKRSettings()
    universe: UniverseSettings = UniverseSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    workers: WorkerSettings = WorkerSettings()
    strategy: StrategySettings = StrategySettings()
    options: OptionsSettings = OptionsSettings()
    quotes: QuoteSettings = QuoteSettings()
    risk: RiskSettings = RiskSettings()
    execution: ExecutionSettings = ExecutionSettings()
    pacing: PacingSettings = PacingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    alerts: AlertsSettings = AlertsSettings()
    logging: LoggingSettings = LoggingSettings()
    recording: RecordingSettings = RecordingSettings()
    backtest: BacktestSettings = BacktestSettings()
    stub: StubSettings = StubSettings()
    # Where a key's value came from when it was not written in the file itself, e.g.
    # {"ibkr.account": "$IBKR_ACCOUNT", "execution.mode": "--mode whatif"}: the start line and
    # the live guard's refusals name it. Set by common/settings_file, never read from a file.
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    def origins(self) -> dict[str, str]:
        return dict(self._origins)

    def with_origins(self, origins: dict[str, str]) -> Settings:
        copy = self.model_copy()
        copy._origins = dict(origins)
        return copy
