"""Recordings' folders: their names, the ones past ``recording.keep_days``, crashed ones.

A folder is a recording when its name is ``<market>-<YYYYmmddTHHMMSSZ>`` (an ``-N`` suffix
when two runs start in the same second) and it holds ``meta.json``: nothing else under
``recording.dir`` is ever deleted. Age is the wall clock's: the name's instant is the run's
wall-clock start (a simulated session's clock would give every ``--sim`` run the same day).
"""

from __future__ import annotations

import logging
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from supervisor.recording.format import DIR_TIME_FORMAT, META_FILE, PARTS_DIR
from supervisor.recording.writer import complete, in_progress

log = logging.getLogger("supervisor.recording")

NAME = re.compile(r"^(?P<market>[a-z]+)-(?P<start>\d{8}T\d{6}Z)(?:-\d+)?$")
DAY_S = 86_400.0


def new_path(root: Path, market: str, wall_ts: float) -> Path:
    """A folder for a recording starting now, not taken yet."""
    stamp = datetime.fromtimestamp(wall_ts, UTC).strftime(DIR_TIME_FORMAT)
    path, n = root / f"{market}-{stamp}", 1
    while path.exists():
        n += 1
        path = root / f"{market}-{stamp}-{n}"
    return path


def started(path: Path) -> float | None:
    """The wall-clock start a recording's folder name says; None if it is not one."""
    match = NAME.match(path.name)
    if match is None or not (path / META_FILE).is_file():
        return None
    when = datetime.strptime(match.group("start"), DIR_TIME_FORMAT).replace(tzinfo=UTC)
    return when.timestamp()


def recordings(root: Path) -> list[Path]:
    """The recordings under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(ts, p) for p in root.iterdir() if p.is_dir() and (ts := started(p)) is not None]
    return [p for _, p in sorted(found)]


def prune(root: Path, keep_days: int, now_wall: float) -> list[Path]:
    """Delete the recordings that started more than ``keep_days`` ago (0: none); the ones
    deleted, each logged."""
    if keep_days <= 0:
        return []
    gone = []
    for path in recordings(root):
        ts = started(path)
        if ts is not None and now_wall - ts > keep_days * DAY_S and not in_progress(path):
            shutil.rmtree(path, ignore_errors=True)
            log.info(
                "recording %s deleted: older than recording.keep_days %d",
                path,
                keep_days,
                extra={"event": "recording_deleted", "path": str(path)},
            )
            gone.append(path)
    return gone


def complete_crashed(root: Path) -> list[Path]:
    """Compact the part files a recording cut short left (a crash, a kill): the next run
    does it, so every recording ends as one file per kind. The ones completed."""
    done = []
    for path in recordings(root):
        if (path / PARTS_DIR).exists() and not in_progress(path):
            try:
                complete(path)
            except Exception as exc:  # noqa: BLE001 - any: one unreadable part must not
                # turn every later run's recording off
                log.warning("recording %s could not be completed: %s", path, exc)
                continue
            log.info(
                "recording %s was cut short (no clean end): its parts compacted",
                path,
                extra={"event": "recording_completed", "path": str(path)},
            )
            done.append(path)
    return done
