"""Rows into a recording's Parquet files, as the run goes (format: recording/format.py).

Rows are buffered per kind as columns (one Python list per column: appending is the whole
cost on the broker's path); ``flush`` writes each kind's buffer as one part file, which is
what a crash can lose at most; ``close`` compacts the parts into ``<kind>.parquet``. Only
the supervisor's event loop writes, so nothing here locks.

A run of days must not pile up a part per kind per cycle until its end: every
``COMPACT_CYCLES`` cycles the parts since the last such merge become one, and at a session's
end the session's files become one, so a kind keeps one file per past session, a few of
today's merges and at most ``COMPACT_CYCLES`` parts. A part is named by the kind's row
number of its first row; a merge writes the merged file under its first part's name, then
deletes the others, and a crash between the two leaves parts whose rows the merged file
already holds, which ``format.part_files`` leaves out by their names.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from supervisor.recording.bars_delta import float_lists
from supervisor.recording.format import (
    BAR_VALUES,
    BARS,
    META_FILE,
    PARTS_DIR,
    SCHEMAS,
    file_name,
    part_files,
    part_name,
)

log = logging.getLogger("supervisor.recording")

COMPRESSION = "zstd"  # the smallest files of the codecs every Parquet reader has
# a kind's buffer is flushed at this many rows even inside a cycle (1,000 symbols' bars)
FLUSH_ROWS = 20_000
# a compacted file's row groups: parts joined up to this many bytes in memory (a day of
# 1,000 symbols' bars is gigabytes uncompressed: never read whole)
COMPACT_BYTES = 32_000_000
# every this many cycles each kind's parts since the last merge are merged into one file
# (a cycle a minute: ~13 merged files a session, then one at its end)
COMPACT_CYCLES = 30
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
        # (first row, rows) of each part on disk; merges start at these indexes: the parts
        # since the last merge of COMPACT_CYCLES, the files since the session's start
        self._parts: dict[str, list[tuple[int, int]]] = {kind: [] for kind in SCHEMAS}
        self._merge_from = dict.fromkeys(SCHEMAS, 0)
        self._session_from = dict.fromkeys(SCHEMAS, 0)
        self._cycles = 0  # cycle ends since the last merge
        # where the session that ended stops in each kind's parts, until merged
        self._session_end: dict[str, int] | None = None
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

    def cycle_ended(self) -> None:
        """Every buffer to disk; then the session that ended, if one did, merged into one
        file per kind, else every ``COMPACT_CYCLES`` calls each kind's parts since the last
        merge. After the cycle, not before it: a merge of a day takes seconds at 1,000
        symbols, and the first cycle of a session should not wait for it."""
        self.flush()
        self._cycles += 1
        ended, self._session_end = self._session_end, None
        if ended is not None:
            for kind in SCHEMAS:
                self._guarded(kind, self._merge, kind, self._session_from[kind], ended[kind])
                self._session_from[kind] = self._merge_from[kind]
        elif self._cycles >= COMPACT_CYCLES:
            self._cycles = 0
            for kind in SCHEMAS:
                self._guarded(kind, self._merge, kind, self._merge_from[kind], None)

    def session_ended(self) -> None:
        """The session of the parts on disk has ended (said at the next session's first
        cycle: what is buffered then is the new one's); they are merged at the next
        ``cycle_ended``."""
        self._cycles = 0
        self._session_end = {kind: len(parts) for kind, parts in self._parts.items()}

    def _merge(self, kind: str, start: int, end: int | None) -> None:
        """The parts ``start:end`` of a kind into one file; the next merge of COMPACT_CYCLES
        starts after it."""
        parts = self._parts[kind][start:end]
        if len(parts) > 1:
            began = time.thread_time()
            try:
                folder = self.root / PARTS_DIR / kind
                paths = [folder / part_name(first) for first, _ in parts]
                temporary = folder / "merge.tmp"
                merge_into(paths, SCHEMAS[kind], temporary)
                os.replace(temporary, paths[0])  # from here its rows are in it: see part_files
                for path in paths[1:]:
                    path.unlink()
                self._parts[kind][start:end] = [(parts[0][0], sum(n for _, n in parts))]
            finally:
                self.busy_s += time.thread_time() - began
        self._merge_from[kind] = start + min(len(parts), 1)

    def _flush_kind(self, kind: str) -> None:
        first = FLUSH_FIRST.get(kind)
        if first is not None and self._buffered[first]:
            self._flush_kind(first)
        self._guarded(kind, self._write_part, kind)

    def _guarded(self, kind: str, write: Callable[..., None], *args: Any) -> None:
        """``write(*args)``; a failure stops the recording (said once), never the run."""
        if self.closed:
            return
        try:
            write(*args)
        except Exception as exc:  # noqa: BLE001 - not only OSError/Arrow: pa.array's OverflowError
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
        parts = self._parts[kind]
        first = parts[-1][0] + parts[-1][1] if parts else 0
        folder = self.root / PARTS_DIR / kind
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / part_name(first)
        temporary = final.with_suffix(".tmp")
        pq.write_table(table, temporary, compression=COMPRESSION)
        os.replace(temporary, final)  # a crash never leaves half a part under its name
        parts.append((first, table.num_rows))

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
        except Exception as exc:  # noqa: BLE001 - the parts stay: the next start retries
            log.error("recording %s not compacted: %r", self.root, exc)
        finally:
            self._lock.close()
            (self.root / LOCK_FILE).unlink(missing_ok=True)

    def discard(self) -> None:
        """The folder gone, the lock let go: a recording that could not even be started
        (its meta.json not written) leaves nothing behind."""
        self.closed = True
        self._lock.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def part_count(self) -> int:
        """Part files on disk (bounded: see the module's docstring)."""
        return sum(len(parts) for parts in self._parts.values())

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
        parts = part_files(root, kind)
        if final.exists() and not parts:
            continue
        temporary = final.with_suffix(".tmp")
        merge_into(parts, schema, temporary)
        os.replace(temporary, final)
    if had_parts:
        shutil.rmtree(parts_root)
    return had_parts


def merge_into(parts: Sequence[Path], schema: pa.Schema, target: Path) -> None:
    """``parts``' rows, in order, into one file (row groups of up to COMPACT_BYTES in
    memory: a day of 1,000 symbols' bars is never read whole)."""
    with pq.ParquetWriter(target, schema, compression=COMPRESSION) as out:
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
