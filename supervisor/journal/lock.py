"""One bot per journal: an exclusive lock on ``<journal>.lock`` naming the holder's pid.

Two bots on one journal would both pass the duplicate guard for the same intent and race each
other's cancels. The lock is an OS file lock (flock), so it goes with the process: a SIGKILL
or a crash releases it and the next start takes it over; nothing stale to clean by hand.
Readers (``report``) take no lock: WAL lets them read while the bot writes.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

from supervisor.journal.rows import JournalError


class JournalLock:
    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise JournalError naming who holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise JournalError(
                f"{self.path.with_suffix('')} is in use by another bot ({holder}): one bot per "
                "journal; stop it first, or give this one another execution.journal_path"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
