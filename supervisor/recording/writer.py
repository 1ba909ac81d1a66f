"""Rows into a recording's Parquet files, as the run goes (format: recording/format.py).

Rows are buffered per kind as columns (one Python list per column: appending is the whole
cost on the broker's path); ``flush`` writes each kind's buffer as one part file, which is
what a crash can lose at most; ``close`` compacts the parts into ``<kind>.parquet``. Only
the supervisor's event loop writes, so nothing here locks.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from supervisor.recording.bars_delta import float_lists
from supervisor.recording.format import BAR_VALUES, BARS, META_FILE, PARTS_DIR, SCHEMAS, file_name

log = logging.getLogger("supervisor.recording")

COMPRESSION = "zstd"  # the smallest files of the codecs every Parquet reader has
# a kind's buffer is flushed at this many rows even inside a cycle (1,000 symbols' bars)
FLUSH_ROWS = 20_000
# a compacted file's row groups: parts joined up to this many bytes in memory (a day of
# 1,000 symbols' bars is gigabytes uncompressed: never read whole)
COMPACT_BYTES = 32_000_000
# held (flock) by the writer while the run goes: another run's retention pass leaves a
# recording in progress alone (its parts are not a crash's)
LOCK_FILE = ".lock"


def in_progress(root: Path) -> bool:
    """A writer holds ``root``'s lock (a running bot records into it)."""
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no lock file: closed cleanly, or never opened by this version
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also lets go of the lock just taken
    return False


FLOAT_LIST = pa.list_(pa.float64())
# a kind whose rows refer to another's: that one goes to disk first (a crash between the
# two leaves bars rows whose bar values are all there)
FLUSH_FIRST = {BARS: BAR_VALUES}


class RecordingWriter:
    """The files of one recording directory, which it creates (never an existing one)."""

    def __init__(self, root: Path, flush_rows: int = FLUSH_ROWS) -> None:
        root.mkdir(parents=True, exist_ok=False)
        self.root = root
        self._lock = open(root / LOCK_FILE, "a")  # noqa: SIM115 - held until close
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.flush_rows = flush_rows
        self._names = {kind: schema.names for kind, schema in SCHEMAS.items()}
        self._columns: dict[str, dict[str, list[Any]]] = {k: {} for k in SCHEMAS}
        self._buffered = dict.fromkeys(SCHEMAS, 0)
        self._parts = dict.fromkeys(SCHEMAS, 0)
        self.rows = dict.fromkeys(SCHEMAS, 0)  # written or buffered, per kind
        self.closed = False
        # why the recording stopped early (a full disk, a value Parquet refused): the run
        # goes on without it, said once; never an error on the broker's path
        self.failure: str | None = None
        self.busy_s = 0.0  # CPU in writing parts (the benchmark's figure)
        for kind in SCHEMAS:
            self._reset(kind)

    def _reset(self, kind: str) -> None:
        self._columns[kind] = {name: [] for name in self._names[kind]}
        self._buffered[kind] = 0

    def add(self, kind: str, row: Mapping[str, Any]) -> None:
        """One row; a column the row leaves out is null."""
        if self.closed:
            return  # a late answer after the end: the recording is already whole
        for name, column in self._columns[kind].items():
            column.append(row.get(name))
        self._buffered[kind] += 1
        self.rows[kind] += 1
        if self._buffered[kind] >= self.flush_rows:
            self._flush_kind(kind)

    def extend(self, kind: str, count: int, columns: Mapping[str, Sequence[Any]]) -> None:
        """``count`` rows given as columns (each of that length); one left out is null."""
        if self.closed:
            return
        for name, column in self._columns[kind].items():
            values = columns.get(name)
            column.extend(values if values is not None else [None] * count)
        self._buffered[kind] += count
        self.rows[kind] += count
        if self._buffered[kind] >= self.flush_rows:
            self._flush_kind(kind)

    def flush(self) -> None:
        """Every kind's buffer to disk, each as one part file (a cycle's end)."""
        for kind in SCHEMAS:  # bar values before bars (FLUSH_FIRST): SCHEMAS' order
            if self._buffered[kind] and not self.closed:
                self._flush_kind(kind)

    def _flush_kind(self, kind: str) -> None:
        first = FLUSH_FIRST.get(kind)
        if first is not None and self._buffered[first]:
            self._flush_kind(first)
        if self.closed:
            return
        try:
            self._write_part(kind)
        except (OSError, pa.ArrowException) as exc:
            self.failure = f"{kind}: {exc!r}"
            self.closed = True  # nothing more is buffered: the rows so far stay on disk
            log.error(
                "recording %s stopped, the run goes on without it: %s",
                self.root,
                self.failure,
                extra={"event": "recording_failed", "path": str(self.root)},
            )

    def _write_part(self, kind: str) -> None:
        began = time.thread_time()
        try:
            self._write_table(kind)
        finally:
            self.busy_s += time.thread_time() - began

    def _write_table(self, kind: str) -> None:
        schema, columns = SCHEMAS[kind], self._columns[kind]
        arrays = [
            float_lists(columns[f.name])
            if f.type == FLOAT_LIST
            else pa.array(columns[f.name], f.type)
            for f in schema
        ]
        table = pa.Table.from_arrays(arrays, schema=schema)
        self._reset(kind)
        self._parts[kind] += 1
        folder = self.root / PARTS_DIR / kind
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{self._parts[kind]:08d}.parquet"
        temporary = final.with_suffix(".tmp")
        pq.write_table(table, temporary, compression=COMPRESSION)
        os.replace(temporary, final)  # a crash never leaves half a part under its name

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        write_meta(self.root, meta)

    def close(self) -> None:
        """The last rows flushed, then every kind compacted into its one file."""
        if self._lock.closed:
            return
        self.flush()
        self.closed = True
        try:
            complete(self.root)
        except (OSError, pa.ArrowException) as exc:  # the parts stay: the next start retries
            log.error("recording %s not compacted: %r", self.root, exc)
        finally:
            self._lock.close()
            (self.root / LOCK_FILE).unlink(missing_ok=True)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


def write_meta(root: Path, meta: Mapping[str, Any]) -> None:
    temporary = root / (META_FILE + ".tmp")
    temporary.write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(temporary, root / META_FILE)


def read_meta(root: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((root / META_FILE).read_text(encoding="utf-8"))
    return meta


def complete(root: Path) -> bool:
    """Compact the parts of ``root`` into one file per kind (also a crashed recording's, at
    the next start). Every kind gets its file, empty if nothing of it was recorded, so a
    reader finds all seven. True if there were parts to compact."""
    parts_root = root / PARTS_DIR
    had_parts = parts_root.exists()
    for kind, schema in SCHEMAS.items():
        final = root / file_name(kind)
        parts = sorted((parts_root / kind).glob("*.parquet"))
        if final.exists() and not parts:
            continue
        temporary = final.with_suffix(".tmp")
        with pq.ParquetWriter(temporary, schema, compression=COMPRESSION) as out:
            pending: list[pa.Table] = []
            size = 0
            for part in parts:
                pending.append(pq.read_table(part, schema=schema))
                size += pending[-1].nbytes
                if size >= COMPACT_BYTES:
                    out.write_table(pa.concat_tables(pending), row_group_size=1 << 30)
                    pending, size = [], 0
            if pending:
                out.write_table(pa.concat_tables(pending), row_group_size=1 << 30)
        os.replace(temporary, final)
    if had_parts:
        shutil.rmtree(parts_root)
    return had_parts
