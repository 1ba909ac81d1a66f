"""The journal file under a running bot: still the one opened? (checked at each cycle's start)

    Journal.lost()  the journal's path gone or another file (supervisor/journal/identity.py),
                    or its lock file gone and held by another bot now (journal/lock.py)
    check()         -> "" while all is well; else what happened: said once (one ERROR
                    naming the path and what changed, one alert), and the desk refuses new
                    entries (risk rule journal_lost) while it lasts; exits, the live book and
                    the expiry guard go on (they write into the file still open)

SQLite goes on writing into a file deleted or renamed under it without an error, so without
this a deleted journal would silently take every later row with it and the next start would
find an empty one. Resolution: a restart (on the path's new or restored journal; live, the
broker's orders tell the new start what was sent). A file put back (the same inode) resolves
it too.
"""

from __future__ import annotations

import logging

from supervisor.journal.store import Journal
from supervisor.observe.alerts import Alerter

log = logging.getLogger("supervisor.trading.journal_watch")


class JournalWatch:
    def __init__(self, journal: Journal, alerter: Alerter | None) -> None:
        self.journal = journal
        self.alerter = alerter
        self.said = ""  # what was said of the journal file (said again only when it changes)

    def check(self) -> str:
        lost = self.journal.lost() or ""
        if lost and lost != self.said:
            log.error(
                "journal lost: %s; no new entry from now on (exits and the expiry "
                "guard go on) until the bot is restarted",
                lost,
                extra={"event": "journal_lost", "path": str(self.journal.path)},
            )
            if self.alerter is not None:
                self.alerter.send_once(
                    "journal_lost",
                    "journal_lost",
                    f"journal lost: {lost}; no new entry until a restart",
                )
        elif self.said and not lost:
            log.warning(
                "the journal %s is the file opened again: entries resume",
                self.journal.path,
                extra={"event": "journal_back"},
            )
        self.said = lost
        return lost
