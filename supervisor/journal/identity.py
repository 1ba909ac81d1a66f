"""Is the file at a path still the one we opened? (the journal, its lock file)

    at open      FileIdentity(path): the path's (device, inode)
    each cycle   .changed() -> None, or what became of it: the path gone (deleted, moved
                 away) or another file there (replaced: a new inode)

SQLite keeps writing into a file that was unlinked or renamed under it, without an error:
a journal deleted under a running bot would take every later write with it, and the next
start would find an empty journal. One os.stat a cycle notices it. Writing into a file in
place (``cp backup journal.sqlite``: the same inode) is not seen here (and is corruption
SQLite may or may not notice).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class FileIdentity:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened = _stat(path)

    def changed(self) -> str | None:
        """None while the path still names the file opened; else what became of it. An
        error other than "not found" (a permission, an I/O error) is logged, not taken as
        a loss: the file may well be there (the next cycle looks again)."""
        if self.opened is None:
            return None  # nothing was there to compare with
        try:
            now = _stat(self.path)
        except OSError as exc:
            log.warning("cannot look at %s: %s (looked at again next cycle)", self.path, exc)
            return None
        if now is None:
            return f"{self.path} is gone (deleted or moved away under the running bot)"
        if now != self.opened:
            return (
                f"{self.path} is another file now (replaced under the running bot: "
                f"inode {self.opened[1]} at open, {now[1]} now)"
            )
        return None
