"""A WAL left at the journal's path for another file is set aside at start, never applied.

SQLite names the WAL by path (``<journal>-wal``) and nothing in it names its database file.
A journal replaced or deleted under a bot leaves that bot's WAL at the path, and the next
open applies it to whatever file is there now: a replacement reads "database disk image is
malformed"; a new (empty) file drops its frames. So the bot writes down in its lock file
which file and which WAL it opened (``owner_note``), and a start looks first (``set_aside``):

    WAL with frames, no journal file (or an empty one)        -> set aside (SQLite drops it)
    WAL the last bot wrote, journal file another one now       -> set aside (it would damage it)
    anything else (no note, both files copied elsewhere)       -> SQLite applies it, as always

Set aside means renamed to ``<journal>-wal.stale-<UTC time>`` with an ERROR naming both
files: its rows belong to the file that was replaced or deleted (copy that file next to it
as ``X`` and the WAL as ``X-wal`` to read them). The running bot's side (it checkpoints into
the file it opened and follows it) is supervisor/journal/follow.py.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

log = logging.getLogger("supervisor.journal.store")

WAL_HEADER = 32  # bytes; a WAL no longer than its header holds no frame to apply
_NOTE = re.compile(r"journal (\d+):(\d+) wal (\d+):(\d+)")

FileId = tuple[int, int]  # (st_dev, st_ino)


def wal_of(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def file_id(path: Path) -> FileId | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def owner_note(db: Path) -> str:
    """The journal file and WAL at ``db`` now, as the lock file keeps them ("" if either is
    missing): what the next start compares with."""
    ids = file_id(db), file_id(wal_of(db))
    if ids[0] is None or ids[1] is None:
        return ""
    return f"journal {ids[0][0]}:{ids[0][1]} wal {ids[1][0]}:{ids[1][1]}"


def _parse(note: str) -> tuple[FileId, FileId] | None:
    found = _NOTE.search(note)
    if found is None:
        return None
    dev, ino, wal_dev, wal_ino = (int(g) for g in found.groups())
    return (dev, ino), (wal_dev, wal_ino)


def stale_reason(db: Path, note: str) -> str | None:
    """Why the WAL at ``db``'s path does not belong to the file there (None: it does, or
    cannot be told apart, or holds no frame). ``note``: what the last bot wrote down."""
    try:
        wal = os.stat(wal_of(db))
    except FileNotFoundError:
        return None
    if wal.st_size <= WAL_HEADER:
        return None
    try:
        st = os.stat(db)
    except FileNotFoundError:
        return f"there is no {db.name} for it (SQLite would drop its frames)"
    if st.st_size == 0:
        return f"{db.name} is empty (SQLite would drop its frames)"
    recorded = _parse(note)
    if (
        recorded is not None
        and recorded[1] == (wal.st_dev, wal.st_ino)
        and recorded[0] != (st.st_dev, st.st_ino)
    ):
        return (
            f"it was written for the file that was at the path before (inode "
            f"{recorded[0][1]}), not the one there now (inode {st.st_ino}); applied to "
            "it, it would damage it"
        )
    return None


def aside_name(path: Path, tag: str, now: float) -> Path:
    """``<path>.<tag>-<UTC time>``, not taken yet."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    name = path.with_name(f"{path.name}.{tag}-{stamp}")
    n = 1
    while name.exists():
        n += 1
        name = path.with_name(f"{path.name}.{tag}-{stamp}-{n}")
    return name


def set_aside(db: Path, note: str) -> Path | None:
    """Before SQLite opens ``db``: a WAL there that is not its own is renamed aside (and
    said); where it went, or None."""
    why = stale_reason(db, note)
    if why is None:
        return None
    wal = wal_of(db)
    aside = aside_name(wal, "stale", time.time())
    os.replace(wal, aside)
    log.error(
        "%s does not belong to the journal %s: %s. Set aside as %s and not applied; "
        "the journal opens without it. Its rows belong to the journal file that was "
        "replaced or deleted: to read them, put that file next to it as X and it as "
        "X-wal, and open X",
        wal,
        db,
        why,
        aside,
        extra={"event": "journal_wal_stale", "path": str(db), "aside": str(aside)},
    )
    return aside


def clear_own_wal(db: Path, own: FileId | None, now: float) -> Path | None:
    """After the connection that wrote ``db``'s WAL let go of a file moved away: the WAL
    still at the path, if it is that connection's, must not reach the file there now.
    Empty (checkpointed): deleted. Frames left (the checkpoint could not finish): renamed
    aside, returned."""
    wal = wal_of(db)
    try:
        st = os.stat(wal)
    except FileNotFoundError:
        return None
    if own is None or (st.st_dev, st.st_ino) != own:
        return None  # not the one it wrote: not ours to touch
    if st.st_size <= WAL_HEADER:
        wal.unlink()
        return None
    aside = aside_name(wal, "stale", now)
    os.replace(wal, aside)
    return aside
