"""One bot per journal: an exclusive lock on ``<journal>.lock`` naming the holder's pid.

Two bots on one journal would both pass the duplicate guard for the same intent and race each
other's cancels. The lock is an OS file lock (flock), so it goes with the process: a SIGKILL
or a crash releases it and the next start takes it over; nothing stale to clean by hand.
Readers (``report``) take no lock: WAL lets them read while the bot writes. A lock file
deleted or replaced under the running bot would let a second bot take a new one: ``check``
(each cycle) takes the lock at the path again, or says who holds it now. Below the pid line
the bot keeps which journal file and WAL it opened (``note``; supervisor/journal/wal.py):
``previous`` is what the last holder left there, read before it is overwritten.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO

from supervisor.journal.rows import JournalError

log = logging.getLogger(__name__)


class JournalLock:
    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + ".lock")
        self._file: IO[str] | None = None
        self.previous = ""  # the lock file's text before this bot took it
        self._note = ""
        self._since = ""

    def acquire(self) -> None:
        """Take the lock or raise JournalError naming who holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.readline().strip() or "unknown"
            handle.close()
            raise JournalError(
                f"{self.path.with_suffix('')} is in use by another bot ({holder}): one bot per "
                "journal; stop it first, or give this one another execution.journal_path"
            ) from None
        handle.seek(0)
        if self._file is None:
            self.previous = handle.read()
        self.release()  # the lock file held before, if this takes it again
        self._file = handle
        self._since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._write()

    def note(self, text: str) -> None:
        """Kept below the pid line (written again if the lock is taken again)."""
        self._note = text
        self._write()

    def _write(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            self._file.write(
                f"pid {os.getpid()} since {self._since}\n"
                + (f"{self._note}\n" if self._note else "")
            )
            self._file.flush()

    def check(self) -> str | None:
        """None while the lock file at the path is the one held (or was taken again just
        now: it had been deleted or replaced); else who holds the one there now."""
        if self._file is None:
            return None
        held = os.fstat(self._file.fileno())
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino):
                return None
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot look at %s: %s (looked at again next cycle)", self.path, exc)
            return None
        try:
            self.acquire()
        except (JournalError, OSError) as exc:
            return f"the lock file {self.path} was deleted or replaced, and {exc}"
        log.warning(
            "the lock file %s was deleted or replaced under the running bot: taken again",
            self.path,
            extra={"event": "journal_lock_retaken"},
        )
        return None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
