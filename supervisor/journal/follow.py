"""The running bot's journal connection follows the file it opened, never the path.

A part of ``Journal`` (supervisor/journal/store.py), given its store. SQLite writes a
journal's WAL by path (``<journal>-wal``): moved, replaced or deleted under the bot, the file
takes nothing of what the bot writes after, which lands in a WAL the path's next file
inherits (a replacement then reads "database disk image is malformed"; a new file drops it).
So each cycle
(``lost``) and at close, if the file the connection writes is no longer at its path:

    1  the rows that wait are written, and the WAL checkpointed into the file opened
       (``wal_checkpoint(TRUNCATE)``: the connection still holds it, wherever it went)
    2  where is that file now? Another name in the journal's folder (renamed, linked aside,
       or put back at the path): the bot writes there from now on. No name left (deleted,
       moved elsewhere), or the checkpoint could not finish: a copy of everything it
       journaled (SQLite's backup) as ``<journal>.lost-<UTC time>``, written from now on
    3  the WAL it had at the old path is deleted (empty) or set aside (frames left), never
       left for the file there now; one ERROR says where the rows are

Entries stay refused meanwhile (risk rule journal_lost, supervisor/trading/journal_watch.py);
exits, fills and alerts still journaled go to that file, crash-safe (WAL at its own path).
A crash before a cycle noticed is caught at the next start (supervisor/journal/wal.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path

from supervisor.journal.commits import Store
from supervisor.journal.identity import FileIdentity
from supervisor.journal.lock import JournalLock
from supervisor.journal.wal import FileId, aside_name, clear_own_wal, file_id, owner_note, wal_of

log = logging.getLogger("supervisor.journal.store")


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    db.row_factory = sqlite3.Row
    return db


def connect_readonly(path: Path) -> sqlite3.Connection:
    # a report may read while the bot writes: WAL lets it, without a second writer
    db = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=5.0
    )
    db.row_factory = sqlite3.Row
    return db


def drop_empty_wal(path: Path) -> None:
    """After a read-only close: a read-only connection cannot delete the -wal and -shm it made,
    so each report (or a run's summary read after it) left them beside the journal. A
    read-write open and close deletes them when it is the last connection (SQLite's rule: never
    under a running bot), only for an empty WAL (one with frames is the bot's start's, wal.py)."""
    try:
        if wal_of(path).stat().st_size:
            return
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=0)
        try:
            db.execute("PRAGMA schema_version").fetchone()  # connects: the close then tidies
        finally:
            db.close()
    except (OSError, sqlite3.Error):
        return  # none there, a read-only folder, the bot busy: left as it is


def find_file(folder: Path, wanted: FileId, prefer: Path) -> Path | None:
    """A name in ``folder`` for the file ``wanted`` (``prefer`` first), or None."""
    if file_id(prefer) == wanted:
        return prefer
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) == wanted and entry.is_file(follow_symlinks=False):
                    return Path(entry.path)
    return None


class Follow:
    """Follows the file the store's connection writes; replaces ``store.db`` when it moved."""

    def __init__(self, store: Store, lock: JournalLock | None) -> None:
        self.store = store
        self._lock = lock
        self._identity: FileIdentity | None = None  # the path's file as opened (None: readonly)
        self._at = store.path  # the file the connection writes (the path, until it moved)
        self._at_id: FileIdentity | None = None  # None: readonly, or following gave up
        self._wal_id: FileId | None = None  # the WAL the connection writes, at _at

    def start(self) -> None:
        """The file is opened read-write and migrated (WAL mode set): followed from now on."""
        self._identity = FileIdentity(self.store.path)  # what lost() compares
        self._opened(self.store.path)

    def lost(self) -> str | None:
        """What became of this journal's file (deleted, moved away, replaced) or its lock
        file under the running bot; None while both are the ones opened. SQLite goes on
        writing into a file unlinked under it, so only this tells."""
        if self._identity is None:
            return None
        self.follow()  # the connection goes on with the file opened, wherever it went
        return self._identity.changed() or (self._lock.check() if self._lock else None)

    def _opened(self, at: Path) -> None:
        """The connection writes ``at`` now (WAL mode set): what each look compares with."""
        self._at, self._at_id, self._wal_id = at, FileIdentity(at), file_id(wal_of(at))
        if at == self.store.path and self._lock is not None:
            self._lock.note(owner_note(at))

    def follow(self) -> None:
        if self._at_id is None or self._at_id.changed() is None:
            return
        try:
            self._relocate(self._at_id)
        except (sqlite3.Error, OSError) as exc:
            self._at_id = None  # said once; SQLite goes on as before
            log.error(
                "journal %s: cannot follow the file it writes, moved away from %s "
                "(%s): it goes on writing through %s; after the bot stops, that WAL "
                "is set aside at the next start",
                self.store.path,
                self._at,
                exc,
                wal_of(self._at),
            )

    def _relocate(self, opened: FileIdentity) -> None:
        old, now, path = self._at, time.time(), self.store.path
        with contextlib.suppress(sqlite3.Error):
            self.store.flush()  # says what it could not write
        busy = self.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        assert opened.opened is not None  # (the file existed when it was opened)
        found = None if busy else find_file(path.parent, opened.opened, path)
        target = found or aside_name(path, "lost", now)
        db = connect(target)
        try:
            if found is None:
                self.store.db.backup(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            db.close()
            raise
        self.store.db.close()
        self.store.db = db
        kept = clear_own_wal(old, self._wal_id, now)
        self._opened(target)
        also = f"; the WAL it wrote at {old.name} is set aside as {kept}" if kept else ""
        if target == path:
            log.warning(
                "the journal file opened is back at %s: the bot writes there again%s",
                target,
                also,
                extra={"event": "journal_followed", "to": str(target)},
            )
        # WARNING: the loss itself is the one ERROR (and alert) of journal_watch; this says
        # where the rows are
        elif found is not None:
            log.warning(
                "journal %s: the file the bot opened was moved or replaced under it; "
                "everything it journaled is in %s (WAL checkpointed into it), and what "
                "it journals until it stops goes there too, never to the file at the "
                "path%s",
                path,
                target,
                also,
                extra={"event": "journal_followed", "to": str(target)},
            )
        else:
            log.warning(
                "journal %s: the file the bot opened was deleted (or moved out of %s) "
                "under it; everything it journaled is copied to %s, and what it "
                "journals until it stops goes there too%s",
                path,
                path.parent,
                target,
                also,
                extra={"event": "journal_followed", "to": str(target)},
            )
