"""The journal's tables. Changes are appended to ``MIGRATIONS``, never edited: ``PRAGMA
user_version`` counts those applied, and a file written by newer code is refused.

A migration that only creates tables (and their indexes) is listed in ``ADDS_TABLES`` with
the tables it creates. A file that lacks only such migrations is read without migrating it
(``report``, ``reconcile``: a read-only open never writes) as if those tables were empty
(``as_temporary``);
``READABLE_FROM`` is the oldest version so read. A read-write open (``run``) migrates it.
"""

from __future__ import annotations

from collections.abc import Mapping

CONTRACT_COLUMNS = (
    "contract_symbol, expiry, strike, option_right, multiplier, exchange, trading_class"
)
CONTRACT_DDL = """contract_symbol TEXT NOT NULL, expiry TEXT NOT NULL, strike REAL NOT NULL,
    option_right TEXT NOT NULL, multiplier INTEGER NOT NULL, exchange TEXT NOT NULL,
    trading_class TEXT NOT NULL"""

MIGRATIONS: tuple[str, ...] = (
    f"""
CREATE TABLE cycles (cycle_id INTEGER PRIMARY KEY, day TEXT NOT NULL, started_ts REAL NOT NULL,
    ended_ts REAL, ok INTEGER, failed INTEGER, seconds REAL);
CREATE INDEX cycles_day ON cycles (day);
CREATE TABLE signals (id INTEGER PRIMARY KEY, cycle_id INTEGER NOT NULL, day TEXT NOT NULL,
    symbol TEXT NOT NULL, signal TEXT NOT NULL, confidence REAL, reasons TEXT NOT NULL,
    skipped TEXT, error TEXT);
CREATE INDEX signals_day ON signals (day);
CREATE TABLE intents (intent_id TEXT PRIMARY KEY, day TEXT NOT NULL, cycle_id INTEGER NOT NULL,
    symbol TEXT NOT NULL, {CONTRACT_DDL}, signal TEXT NOT NULL, entry_limit REAL,
    take_profit REAL, stop_loss REAL, premium REAL, confidence REAL, reasons TEXT NOT NULL,
    bid REAL, ask REAL, quote_ts REAL);
CREATE INDEX intents_day ON intents (day);
CREATE TABLE decisions (id INTEGER PRIMARY KEY, intent_id TEXT NOT NULL, day TEXT NOT NULL,
    ts REAL NOT NULL, accepted INTEGER NOT NULL, quantity INTEGER NOT NULL, rule TEXT NOT NULL,
    reason TEXT NOT NULL, values_json TEXT NOT NULL);
CREATE INDEX decisions_day ON decisions (day, accepted);
CREATE TABLE orders (id INTEGER PRIMARY KEY, intent_id TEXT NOT NULL, mode TEXT NOT NULL,
    status TEXT NOT NULL, quantity INTEGER NOT NULL, broker_order_id INTEGER,
    details TEXT NOT NULL, created_ts REAL NOT NULL, updated_ts REAL NOT NULL);
CREATE INDEX orders_intent ON orders (intent_id);
CREATE INDEX orders_broker ON orders (broker_order_id);
CREATE TABLE whatifs (id INTEGER PRIMARY KEY, intent_id TEXT NOT NULL,
    init_margin_change REAL, maint_margin_change REAL, commission REAL, ts REAL NOT NULL);
CREATE TABLE fills (id INTEGER PRIMARY KEY, intent_id TEXT NOT NULL, side TEXT NOT NULL,
    quantity INTEGER NOT NULL, price REAL NOT NULL, commission REAL, exec_id TEXT UNIQUE,
    ts REAL NOT NULL);
CREATE TABLE positions (intent_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, {CONTRACT_DDL},
    quantity INTEGER NOT NULL, entry_limit REAL, take_profit REAL, stop_loss REAL,
    status TEXT NOT NULL, opened_ts REAL NOT NULL, entry_price REAL, filled_ts REAL, mark REAL,
    exit_price REAL, closed_ts REAL, exit_reason TEXT, opened_day TEXT NOT NULL,
    closed_day TEXT);
CREATE INDEX positions_status ON positions (status);
CREATE TABLE day_state (day TEXT PRIMARY KEY, start_equity REAL NOT NULL,
    halted INTEGER NOT NULL, halted_reason TEXT NOT NULL, halted_ts REAL);
CREATE TABLE alerts (id INTEGER PRIMARY KEY, day TEXT NOT NULL, kind TEXT NOT NULL, key TEXT,
    text TEXT NOT NULL, ts REAL NOT NULL, UNIQUE (day, kind, key));
""",
    # 2: the order's side beside the signal (a SELL signal buys puts)
    """
ALTER TABLE intents ADD COLUMN action TEXT NOT NULL DEFAULT 'BUY';
""",
    # 3: orders followed by IBKR's permId (stable across client ids and reconnects); the
    # broker and account a journal belongs to
    """
ALTER TABLE orders ADD COLUMN perm_id INTEGER;
CREATE INDEX orders_perm ON orders (perm_id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
ALTER TABLE positions ADD COLUMN commission REAL NOT NULL DEFAULT 0;
CREATE TABLE broker_pnl (day TEXT PRIMARY KEY, ts REAL NOT NULL, daily REAL, realized REAL,
    unrealized REAL, net_liquidation REAL);
""",
    # 4: live positions followed from fills: sold so far, and the sales' commissions
    """
ALTER TABLE positions ADD COLUMN exited INTEGER;
ALTER TABLE positions ADD COLUMN exit_commission REAL NOT NULL DEFAULT 0;
""",
    # 5: live, the shares an exercise of one of our options delivered, followed until closed
    # ("<intent id>:shares"), and the account's stock position in each underlying as last seen
    # while an option of ours in it was held (what an exercise changes)
    """
CREATE TABLE shares (share_id TEXT PRIMARY KEY, intent_id TEXT NOT NULL, symbol TEXT NOT NULL,
    quantity INTEGER NOT NULL, cost REAL NOT NULL, status TEXT NOT NULL, opened_ts REAL NOT NULL,
    opened_day TEXT NOT NULL, mark REAL, closed INTEGER NOT NULL DEFAULT 0, exit_price REAL,
    commission REAL NOT NULL DEFAULT 0, exit_reason TEXT, closed_ts REAL, closed_day TEXT);
CREATE INDEX shares_status ON shares (status);
CREATE TABLE stock_seen (symbol TEXT PRIMARY KEY, quantity REAL NOT NULL, ts REAL NOT NULL);
""",
    # 6: what a strategy's rules remember across a restart: the whale rule's last firing per
    # symbol (journal/strategy_rows.py)
    """
CREATE TABLE strategy_memory (rule TEXT NOT NULL, symbol TEXT NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (rule, symbol));
""",
    # 7: the trader's controls (pause, resume, flatten, kill): who asked, when, from where, and
    # what came of it; the latest pause or resume is restored at start (journal/control_rows.py)
    """
CREATE TABLE controls (id INTEGER PRIMARY KEY, day TEXT NOT NULL, ts REAL NOT NULL,
    action TEXT NOT NULL, source TEXT NOT NULL, peer TEXT NOT NULL, result TEXT NOT NULL);
CREATE INDEX controls_day ON controls (day);
""",
    # 8: the positions a flatten (or an incomplete bracket) is closing, until they are closed:
    # a restart between the exits' cancels and the sale finishes it (journal/closing_rows.py);
    # the gateway's outages, so a restart during one does not alert it again (outage_rows.py)
    """
CREATE TABLE closing (intent_id TEXT PRIMARY KEY, reason TEXT NOT NULL, day TEXT NOT NULL,
    ts REAL NOT NULL);
CREATE TABLE outages (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_ts REAL NOT NULL,
    text TEXT NOT NULL, alerted INTEGER NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0,
    ended_ts REAL);
CREATE INDEX outages_open ON outages (kind, ended_ts);
""",
)
SCHEMA_VERSION = len(MIGRATIONS)  # 8

# migration number -> the tables it creates, for the migrations that do nothing else
ADDS_TABLES: Mapping[int, tuple[str, ...]] = {
    5: ("shares", "stock_seen"),
    6: ("strategy_memory",),
    7: ("controls",),
    8: ("closing", "outages"),
}


def readable_from() -> int:
    """The oldest version a read-only open accepts: every later migration only adds tables."""
    version = SCHEMA_VERSION
    while version > 1 and version in ADDS_TABLES:
        version -= 1
    return version


READABLE_FROM = readable_from()  # 4


def as_temporary(number: int) -> str:
    """Migration ``number`` (one of ``ADDS_TABLES``) creating its tables, empty, in the
    connection's temporary schema: a read-only open of an older file reads them as empty
    (an unqualified name finds temp first), and the file is not touched."""
    assert number in ADDS_TABLES, number
    return MIGRATIONS[number - 1].replace("CREATE TABLE ", "CREATE TEMP TABLE ")


POSITION_COLUMNS = (
    f"intent_id, symbol, {CONTRACT_COLUMNS}, quantity, entry_limit, "
    "take_profit, stop_loss, status, opened_ts, entry_price, filled_ts, mark, "
    "exit_price, closed_ts, exit_reason, commission, exited, exit_commission"
)
