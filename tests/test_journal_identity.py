"""The journal file (and its lock file) deleted or replaced under a running bot is noticed."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from supervisor.journal.store import Journal

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / "var" / "journal.sqlite")
    yield j
    j.close()


def test_the_journal_opened_is_not_lost(journal: Journal) -> None:
    assert journal.lost() is None
    assert journal.lost() is None  # and stays so, cycle after cycle


def test_a_deleted_journal_is_noticed_naming_the_path(journal: Journal) -> None:
    # When the file is deleted (as `rm var/journal.sqlite` would) under the open journal
    journal.path.unlink()
    # Then the next look says so, with the path, while writes still go to the open file
    lost = journal.lost()
    assert lost is not None and str(journal.path) in lost and "gone" in lost
    journal.record_alert("2026-01-08", "test", "still writable", 0.0)


def test_a_journal_replaced_by_another_file_is_noticed(journal: Journal, tmp_path: Path) -> None:
    # When another file is moved onto the path (a restored copy, a fresh journal)
    other = tmp_path / "other.sqlite"
    Journal(other).close()
    os.replace(other, journal.path)
    lost = journal.lost()
    assert lost is not None and "another file" in lost and "inode" in lost


def test_a_journal_moved_back_is_the_one_opened_again(journal: Journal, tmp_path: Path) -> None:
    aside = tmp_path / "aside.sqlite"
    os.replace(journal.path, aside)
    assert journal.lost() is not None
    os.replace(aside, journal.path)
    assert journal.lost() is None


def test_a_deleted_lock_file_is_taken_again(journal: Journal) -> None:
    # When the lock file is deleted (a second bot could otherwise take a new one)
    lock = journal.path.with_name(journal.path.name + ".lock")
    lock.unlink()
    # Then the bot takes the lock at the path again: nothing is lost, a second bot is refused
    assert journal.lost() is None
    assert lock.exists() and f"pid {os.getpid()}" in lock.read_text()
    with open(lock, "a+") as handle, pytest.raises(BlockingIOError):
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_lock_file_replaced_and_held_by_another_bot_is_said(journal: Journal) -> None:
    # Given the lock file deleted and another bot holding a new one at the path
    lock = journal.path.with_name(journal.path.name + ".lock")
    lock.unlink()
    with open(lock, "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("pid 4242 since then\n")
        other.flush()
        # Then the journal is as good as lost to this bot: two bots would share it
        lost = journal.lost()
        assert lost is not None and "pid 4242" in lost and "lock file" in lost
    # and once the other lets go, this bot holds it again
    assert journal.lost() is None
