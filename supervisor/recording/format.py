"""The flight recorder's on-disk format (version 1): what a recording holds, column by column.

One recording per run is a directory ``<recording.dir>/<market>-<YYYYmmddTHHMMSSZ>/`` (the
run's start, UTC) holding ``meta.json`` and one Parquet file per kind below. The writer
(supervisor/recording/writer.py) appends row groups as the run goes, so a crash loses at most
the rows of the last unflushed buffer; the replay (supervisor/recording/reader.py) reads the
same files. docs/recording.md is the prose version of this module.

Every row has ``ts``: float64 epoch seconds of the *session clock* when the broker answered
(the simulated clock on ``--sim``, the wall clock on ``ibkr``), then the request's identity,
then the answer's plain values (the fields of common/messages.py's frozen dataclasses), and an
``error`` string: null when the request was answered, the broker error's text when it failed
(a replay answers the same request with the same failure). A float that the venue did not
send is NaN, as in the dataclasses; a value that is absent as a whole (``regular_hours``
returning None, ``closing_price`` not known yet) is null.

Why Parquet: it is what pandas, polars, duckdb and Spark open without a converter, it is
columnar and compressed (repeated symbols and prices cost little), and it is written in row
groups, which is how a recorder appends safely while the run goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from supervisor.recording.bars_delta import expand

FORMAT_VERSION: Final = 1

META_FILE: Final = "meta.json"
# the name of a recording's directory: market, then the run's start in UTC
DIR_TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"

# While the run goes, each flush of a kind is one part file (one row group, written to a
# temporary name and renamed, so a crash never leaves half a part): ``parts/<kind>/
# <first row>.parquet``, the kind's row number of its first row in 12 digits; the writer
# merges them as the run goes (every few cycles, and a session's at its end). At the end of
# the run they are compacted into ``<kind>.parquet`` and ``parts/`` goes; a recording cut
# short by a crash keeps its parts until the next run's start (or ``writer.complete``)
# compacts them. ``read_kind`` below reads either state.
PARTS_DIR: Final = "parts"
PART_DIGITS: Final = 12

# file stems (``<kind>.parquet``)
QUOTES: Final = "quotes"
BARS: Final = "bars"
BAR_VALUES: Final = "bar_values"  # the bars of bars.parquet's answers, once each (bars_delta)
CHAINS: Final = "chains"
OPTION_QUOTES: Final = "option_quotes"
HOURS: Final = "hours"
ACCOUNT: Final = "account"
CONTRACTS: Final = "contracts"
ORDERS: Final = "orders"
CYCLES: Final = "cycles"

# hours.parquet ``kind``: the two calendar answers share one file
HOURS_REGULAR: Final = "regular_hours"
HOURS_CLOSE: Final = "closing_price"

# orders.parquet ``event``: what the bot asked of the venue, and what the venue reported
EV_BRACKET: Final = "place_bracket"  # an entry bracket (intent in the columns + detail)
EV_ORDER: Final = "place_order"  # a DAY limit exit of an option
EV_STOCK: Final = "place_stock_order"  # shares an exercise delivered, closed
EV_EXIT: Final = "place_exit"  # one exit of a bracket placed again (LMT or STP)
EV_CANCEL: Final = "cancel"
EV_WHAT_IF: Final = "what_if"  # IBKR's margin check (result in detail)
EV_FILL: Final = "fill"  # an execution, first time the venue listed it
ORDER_EVENTS: Final = (EV_BRACKET, EV_ORDER, EV_STOCK, EV_EXIT, EV_CANCEL, EV_WHAT_IF, EV_FILL)

_F = pa.float64()
_S = pa.string()
_I = pa.int64()


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    # ts first, error last: the two every kind shares
    return pa.schema([("ts", _F), *fields, ("error", _S)])


# Broker.quote(symbol) -> Quote. ``quote_ts`` is the Quote's own ts (when the snapshot was
# taken), ``ts`` when the broker answered.
QUOTES_SCHEMA: Final = _schema(
    ("symbol", _S),
    ("bid", _F),
    ("ask", _F),
    ("last", _F),
    ("close", _F),
    ("bid_size", _F),
    ("ask_size", _F),
    ("volume", _F),
    ("quote_ts", _F),
)

# Broker.bars(symbol, minutes, bar_minutes, rth) -> Bars: one row per answer;
# ``minutes``/``bar_minutes``/``rth`` as requested, ``n_bars`` how many bars it gave, from
# ``first_bar_ts`` to ``last_bar_ts``. The bars themselves (the Bars columns, oldest first)
# are in the list columns as ``read_kind`` returns them; on disk those are null and the bars
# are in bar_values.parquet, each bar once (recording/bars_delta.py: a cycle's answer repeats
# the last one's but for a bar or two), except in the rare row whose bars could not be
# derived from there, which carries them itself.
BARS_SCHEMA: Final = _schema(
    ("symbol", _S),
    ("minutes", _I),
    ("bar_minutes", _I),
    ("rth", pa.bool_()),
    ("n_bars", _I),
    ("first_bar_ts", _F),
    ("last_bar_ts", _F),
    ("bar_ts", pa.list_(_F)),
    ("open", pa.list_(_F)),
    ("high", pa.list_(_F)),
    ("low", pa.list_(_F)),
    ("close", pa.list_(_F)),
    ("volume", pa.list_(_F)),
)

# A bar of a bars request (symbol, bar_minutes, rth) as first answered, or again when its
# values changed: ``answer`` is the row of bars.parquet (0-based) that carried it first,
# ``ts`` when. Sorted by ``answer``; one symbol's 1-minute bars of the day are
# ``bar_values[(symbol == S) & (bar_minutes == 1)].drop_duplicates("bar_ts", keep="last")``.
BAR_VALUES_SCHEMA: Final = _schema(
    ("answer", _I),
    ("symbol", _S),
    ("bar_minutes", _I),
    ("rth", pa.bool_()),
    ("bar_ts", _F),
    ("open", _F),
    ("high", _F),
    ("low", _F),
    ("close", _F),
    ("volume", _F),
)

# Broker.chain(symbol) -> OptionChain
CHAINS_SCHEMA: Final = _schema(
    ("symbol", _S),
    ("expirations", pa.list_(_S)),
    ("strikes", pa.list_(_F)),
    ("multiplier", _I),
    ("exchange", _S),
    ("trading_class", _S),
)

# Broker.option_quotes(contracts) -> tuple[OptionQuote, ...]: one row per *requested*
# contract. ``call`` numbers the broker calls (rows of one call share it); ``answered`` is
# false when the answer left that contract out (the replay leaves it out too). On an error
# every requested contract gets a row with ``error`` set and NaN values.
OPTION_QUOTES_SCHEMA: Final = _schema(
    ("call", _I),
    ("symbol", _S),
    ("expiry", _S),  # YYYYMMDD
    ("strike", _F),
    ("right", _S),  # C | P
    ("multiplier", _I),
    ("exchange", _S),
    ("trading_class", _S),
    ("answered", pa.bool_()),
    ("bid", _F),
    ("ask", _F),
    ("last", _F),
    ("volume", _F),
    ("iv", _F),
    ("delta", _F),
    ("gamma", _F),
    ("vega", _F),
    ("theta", _F),
    ("und_price", _F),
    ("quote_ts", _F),
)

# Broker.regular_hours(symbol) -> TradingHours | None  (kind "regular_hours": sessions as
# [start, end) epoch-second pairs in two lists, ``days`` every listed day (ISO), ``zone`` the
# IANA zone; all four null when the venue said nothing) and
# Broker.closing_price(symbol, day) -> float | None  (kind "closing_price": ``day`` as asked,
# ``close`` null until the venue has it).
HOURS_SCHEMA: Final = _schema(
    ("kind", _S),
    ("symbol", _S),
    ("session_start", pa.list_(_F)),
    ("session_end", pa.list_(_F)),
    ("days", pa.list_(_S)),
    ("zone", _S),
    ("day", _S),  # YYYY-MM-DD
    ("close", _F),
)

# Broker.account() -> AccountSnapshot (the desk asks at each cycle's start): its fields.
ACCOUNT_SCHEMA: Final = _schema(
    ("account", _S),
    ("net_liquidation", _F),
    ("available_funds", _F),
    ("currency", _S),
    ("daily_pnl", _F),
    ("realized_pnl", _F),
    ("unrealized_pnl", _F),
)

# Broker.unknown_symbols(symbols) -> {symbol: the venue's words} (the universe checked once
# against the venue's contract details): ``symbols`` as asked, ``unknown`` and ``reasons``
# in the same order.
CONTRACTS_SCHEMA: Final = _schema(
    ("symbols", pa.list_(_S)),
    ("unknown", pa.list_(_S)),
    ("reasons", pa.list_(_S)),
)

# Order events and fills. The contract columns are empty for a cancel; ``order_ids`` /
# ``perm_ids`` hold what the venue assigned (three for a bracket, one otherwise, two for a
# placed exit: order id and permId); ``detail`` is JSON of the rest (the whole OrderIntent of
# a bracket, a what-if's result). A fill row: ``order_id``, ``exec_id``, ``side`` (BOT|SLD),
# ``quantity`` (shares), ``price``, ``fill_ts`` (the venue's time), ``commission``.
# ``error_code`` is the venue's code of a refusal (OrderRejected), else null.
ORDERS_SCHEMA: Final = _schema(
    ("event", _S),
    ("symbol", _S),
    ("expiry", _S),
    ("strike", _F),
    ("right", _S),
    ("action", _S),  # BUY | SELL
    ("quantity", _F),
    ("order_type", _S),  # LMT | STP | bracket
    ("limit", _F),
    ("account", _S),
    ("order_ref", _S),  # our intent id
    ("oca_group", _S),
    ("order_id", _I),
    ("order_ids", pa.list_(_I)),
    ("perm_ids", pa.list_(_I)),
    ("exec_id", _S),
    ("side", _S),
    ("price", _F),
    ("fill_ts", _F),
    ("commission", _F),
    ("error_code", _I),
    ("detail", _S),
)

# One row per cycle, written when it starts: ``ts`` the session clock at its start (a replay
# runs its cycles at these times), ``day`` the session's day (YYYY-MM-DD, exchange zone),
# ``wall_ts`` the wall clock then.
CYCLES_SCHEMA: Final = _schema(
    ("cycle", _I),
    ("day", _S),
    ("wall_ts", _F),
)

SCHEMAS: Final[dict[str, pa.Schema]] = {
    QUOTES: QUOTES_SCHEMA,
    BARS: BARS_SCHEMA,
    BAR_VALUES: BAR_VALUES_SCHEMA,
    CHAINS: CHAINS_SCHEMA,
    OPTION_QUOTES: OPTION_QUOTES_SCHEMA,
    HOURS: HOURS_SCHEMA,
    ACCOUNT: ACCOUNT_SCHEMA,
    CONTRACTS: CONTRACTS_SCHEMA,
    ORDERS: ORDERS_SCHEMA,
    CYCLES: CYCLES_SCHEMA,
}


def file_name(kind: str) -> str:
    return f"{kind}.parquet"


def error_text(exc: BaseException) -> str:
    """An ``error`` cell: the exception's class name, then its text (``SymbolDataError: no
    permission``), so a replay can raise the same kind (ConnectionLost is not SymbolDataError;
    a request the caller cancelled, e.g. on its timeout, is ``CancelledError``)."""
    return f"{type(exc).__name__}: {exc}"


def error_parts(text: str) -> tuple[str, str]:
    """(class name, text) of an ``error`` cell written by ``error_text``."""
    name, _, message = text.partition(": ")
    return name, message


def part_name(first_row: int) -> str:
    return f"{first_row:0{PART_DIGITS}d}.parquet"


def part_files(root: Path, kind: str) -> list[Path]:
    """A kind's part files in row order, less any whose rows a merged part before it already
    holds (a merge cut short between writing the merged file and deleting its parts). Names
    of the earlier counter form (8 digits) are taken as they are."""
    kept: list[Path] = []
    covered = 0  # rows up to here are in the parts kept so far
    for path in sorted((root / PARTS_DIR / kind).glob("*.parquet")):
        if len(path.stem) == PART_DIGITS and path.stem.isdigit():
            first = int(path.stem)
            if first < covered:
                continue
            covered = first + pq.read_metadata(path).num_rows
        kept.append(path)
    return kept


def read_kind(root: Path, kind: str) -> pa.Table:
    """One kind of a recording as a table: its compacted file, else the parts a crashed or
    still running recording has so far (an empty table of the schema when neither). Bars
    come with their lists filled in from bar_values."""
    table = _stored(root, kind)
    if kind == BARS:
        return expand(table, _stored(root, BAR_VALUES))
    return table


def _stored(root: Path, kind: str) -> pa.Table:
    final = root / file_name(kind)
    if final.exists():
        return pq.read_table(final, schema=SCHEMAS[kind])
    parts = part_files(root, kind)
    if not parts:
        return SCHEMAS[kind].empty_table()
    return pa.concat_tables(pq.read_table(p, schema=SCHEMAS[kind]) for p in parts)
