"""One run's recording: its folder, meta.json, the recording broker, cycles and flushes.

``open_recording`` is called once where ``run`` builds its supervisor (runtime/sessions.py
``run_supervisor``); it decides whether this run records (``recording.enabled``, and the
market is ``sim`` or ``ibkr``: the stub's market is a seeded function, nothing to record).
The supervisor's loop tells it each cycle's start (a ``cycles`` row: a replay runs its
cycles at those instants) and end (every buffer to disk). ``run`` drives it through
runtime/sessions.py's ``Recorder``, which guards each step: a recording that fails goes
off and the run trades on (docs/recording.md, "What a recorder failure does").
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import to_jsonable_python

from common.config import Settings
from common.locations import PROJECT_ROOT, is_checkout
from supervisor.broker.base import Broker
from supervisor.recording import format as fmt
from supervisor.recording.recording_broker import RecordingBroker
from supervisor.recording.retention import complete_crashed, new_path, prune
from supervisor.recording.writer import RecordingWriter

log = logging.getLogger("supervisor.recording")

RECORDED_MARKETS = ("sim", "ibkr")
PACKAGE = "ibkr-options-bot"


def masked(value: Any) -> Any:
    """Settings as plain values with every secret (a SecretStr) as None."""
    if isinstance(value, SecretStr):
        return None
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value


def settings_record(settings: Settings) -> Any:
    return to_jsonable_python(masked(settings.model_dump(mode="python")))


def _version() -> str | None:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    """git HEAD of a checkout the code runs from; None when installed or git is missing."""
    if not is_checkout(PROJECT_ROOT):
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


class Recording:
    """A recording being written; ``broker`` is what the run uses in place of its own."""

    def __init__(
        self, path: Path, market: str, inner: Broker, now: Callable[[], float], settings: Settings
    ) -> None:
        self.path, self.now = path, now
        self.writer = RecordingWriter(path)
        self.broker = RecordingBroker(inner, self.writer, now)
        try:
            self.meta = self._started(market, settings)
        except BaseException:  # a full disk, no permission: no half-made folder left
            self.writer.discard()
            raise
        self.cycles = 0
        self.day: str | None = None  # the session of the last cycle
        self.ended = False

    def _started(self, market: str, settings: Settings) -> dict[str, Any]:
        """meta.json as the run starts (written at once: a crash leaves it)."""
        now = self.now
        meta: dict[str, Any] = {
            "format_version": fmt.FORMAT_VERSION,
            "market": market,
            "started": now(),
            "started_wall": time.time(),
            "ended": None,
            "ended_wall": None,
            "version": _version(),
            "commit": _commit(),
            "settings": settings_record(settings),
            "symbols": list(settings.universe.symbols),
            "files": [fmt.file_name(kind) for kind in fmt.SCHEMAS],
            "rows": None,
        }
        self.writer.write_meta(meta)
        return meta

    def cycle_started(self, cycle_id: int, day: str, ts: float) -> None:
        if self.day is not None and day != self.day:
            self.writer.session_ended()  # the last session's files merged into one per kind
        self.day = day
        self.cycles += 1
        self.writer.add(
            fmt.CYCLES, {"ts": ts, "cycle": cycle_id, "day": day, "wall_ts": time.time()}
        )

    def cycle_ended(self) -> None:
        self.writer.cycle_ended()  # a crash from here on loses nothing of this cycle

    def close(self) -> None:
        """Every row to disk, the files compacted, meta.json given its end; said in the log.
        A run in which no cycle ran (no gateway, stopped before the open) leaves nothing: a
        replay of it would have nothing to run, as ``run`` leaves no empty journal."""
        if self.ended:
            return
        self.ended = True
        self.writer.close()
        if self.cycles == 0:
            shutil.rmtree(self.path, ignore_errors=True)
            log.info(
                "recording %s removed: no cycle ran",
                self.path,
                extra={"event": "recording_ended", "path": str(self.path), "bytes": 0},
            )
            return
        self.meta.update(ended=self.now(), ended_wall=time.time(), rows=dict(self.writer.rows))
        if self.writer.failure is not None:
            self.meta["failure"] = self.writer.failure
        self.writer.write_meta(self.meta)
        size = self.writer.size_bytes()
        log.info(
            "recording ended: %s (%d cycles, %d rows, %.1f MB)",
            self.path,
            self.cycles,
            sum(self.writer.rows.values()),
            size / 1e6,
            extra={"event": "recording_ended", "path": str(self.path), "bytes": size},
        )


def open_recording(
    settings: Settings, market: str, broker: Broker, now: Callable[[], float]
) -> Recording | None:
    """This run's recording, or None when it records nothing (disabled, or the stub). Old
    recordings past ``keep_days`` are deleted and a crashed one's parts compacted first."""
    config = settings.recording
    if not config.enabled or market not in RECORDED_MARKETS:
        return None
    root = Path(config.dir)
    root.mkdir(parents=True, exist_ok=True)
    complete_crashed(root)
    prune(root, config.keep_days, time.time())
    recording = Recording(new_path(root, market, time.time()), market, broker, now, settings)
    log.info(
        "recording to %s (recording.enabled; docs/recording.md)",
        recording.path,
        extra={"event": "recording_started", "path": str(recording.path)},
    )
    return recording
