"""A data file's rows, whatever it is written in: CSV (UTF-8) or Parquet, and what is wrong.

    table(path)  header + rows, each row with where it is in the file (``line 17`` of a CSV,
                 counting the header as line 1; ``row 16`` of a Parquet file, from 1)
    Problem      one thing wrong, naming the file and the line: what the command prints
    Problems     collects them (at most ``LIMIT`` a file: the first ones say what to fix)

A byte that is not UTF-8 is a problem at its line (a vendor's Latin-1 export, say), never a
replacement character read as data. Parquet's own timestamps come as aware datetimes (or a
problem when the column has no time zone); the loaders parse text ones themselves.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

LIMIT = 10  # problems said per file


@dataclass(frozen=True)
class Problem:
    path: Path
    where: str  # "line 17", "row 16", "" for the file as a whole
    text: str

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.where}: {self.text}" if self.where else f"{self.path}: {self.text}"
        )


class DataError(Exception):
    """The data folder cannot be used: every problem found, one a line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)


@dataclass
class Problems:
    path: Path
    found: list[Problem] = field(default_factory=list)
    more: int = 0

    def add(self, where: str, text: str) -> None:
        if len(self.found) < LIMIT:
            self.found.append(Problem(self.path, where, text))
        else:
            self.more += 1

    def full(self) -> bool:
        return len(self.found) >= LIMIT

    def all(self) -> list[Problem]:
        if self.more:  # the rest of the file is not read: the first ones say what to fix
            more = Problem(self.path, "", f"more problems after these {LIMIT}: not all said")
            return [*self.found, more]
        return list(self.found)


@dataclass(frozen=True)
class Table:
    path: Path
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, Sequence[Any]]]  # (where, values in column order)


def table(path: Path, problems: Problems) -> Table | None:
    """The file's rows; None (with the problem added) when it cannot be read at all."""
    if path.suffix == ".parquet":
        return _parquet(path, problems)
    return _csv(path, problems)


def _csv(path: Path, problems: Problems) -> Table | None:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        problems.add(
            f"line {line}",
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {column} (save the file as UTF-8)",
        )
        return None
    lines = text.splitlines()
    if not lines:
        problems.add("", "empty: no header line")
        return None
    reader = csv.reader(lines)
    header = tuple(c.strip().lower() for c in next(reader))
    rows = [(f"line {n}", values) for n, values in enumerate(reader, start=2) if values]
    return Table(path, header, rows)


def _parquet(path: Path, problems: Problems) -> Table | None:
    import pyarrow as pa  # only when a Parquet file is given
    import pyarrow.parquet as pq

    try:
        data = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        problems.add("", f"not a readable Parquet file: {exc}")
        return None
    columns = tuple(name.lower() for name in data.column_names)
    for name, column in zip(columns, data.columns, strict=True):
        kind = column.type
        if pa.types.is_timestamp(kind) and kind.tz is None:
            problems.add("", f"column {name!r} holds timestamps without a time zone (UTC offset)")
            return None
    values = [column.to_pylist() for column in data.columns]
    rows = [(f"row {n + 1}", tuple(v[n] for v in values)) for n in range(data.num_rows)]
    return Table(path, columns, rows)


def missing(table: Table, required: Sequence[str], problems: Problems) -> bool:
    """Whether a required column is missing (each one said, with the columns there are)."""
    absent = [c for c in required if c not in table.columns]
    where = "line 1" if table.path.suffix != ".parquet" else ""
    for name in absent:
        problems.add(where, f"missing column {name!r} (columns: {', '.join(table.columns)})")
    return bool(absent)


def rows_of(table: Table, names: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
    """Each row's values of ``names`` (None where an optional column is absent or short)."""
    index = [table.columns.index(n) if n in table.columns else None for n in names]
    for where, values in table.rows:
        yield where, [values[i] if i is not None and i < len(values) else None for i in index]


def timestamp(value: Any) -> datetime:
    """An aware datetime from ISO 8601 text or Parquet's own; ValueError says what is wrong."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"ts {value!r} is not an ISO 8601 timestamp") from None
    else:
        raise ValueError(f"ts {value!r} is not an ISO 8601 timestamp")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"ts {value!s} has no UTC offset (write it as {moment.isoformat()}-05:00 or +00:00)"
        )
    return moment


def number(name: str, value: Any, optional: bool = False) -> float | None:
    """A float from text or a number; None for an empty optional one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise ValueError(f"{name} is empty")
    try:
        found = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r} is not a number") from None
    if found != found:  # NaN
        if optional:
            return None
        raise ValueError(f"{name} is NaN")
    return found


def day_of(name: str, value: Any) -> date:
    """A date from ``2026-12-04``, ``20261204`` or Parquet's own."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip() if value is not None else ""
    for form in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, form).date()
        except ValueError:
            continue
    raise ValueError(f"{name} {value!r} is not a date (2026-12-04 or 20261204)")
