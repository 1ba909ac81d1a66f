"""A journal replaced or deleted under a bot: its WAL never reaches the file at the path later.

Real SQLite files; the bot is a subprocess that ends with os._exit (a crash: no close, no
checkpoint), as a SIGKILL would leave it."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.journal.store import Journal
from supervisor.journal.wal import owner_note, stale_reason, wal_of
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

# a, b: checkpointed (b after the backup was taken); c: in the WAL only; then the fault;
# d: written before any look; e: after the bot looked (lost()) -- all of it the old file's
BOT = """
import os, sqlite3, sys
sys.path.insert(0, sys.argv[1])
from supervisor.journal.store import Journal
path, fault, notice = sys.argv[2], sys.argv[3], sys.argv[4] == "1"
j = Journal(path)
def alerts(tag, n):
    for i in range(n):
        j.record_alert("2026-12-01", tag, f"{tag} {i} " + "x" * 300, float(i))
alerts("a", 200)
raw = sqlite3.connect(path)
raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
backup = sqlite3.connect(path + ".backup"); raw.backup(backup); backup.close()
alerts("b", 200)
raw.execute("PRAGMA wal_checkpoint(TRUNCATE)"); raw.close()
alerts("c", 200)
if fault != "unlink":
    os.link(path, path + ".aside")
if fault == "replace":
    os.replace(path + ".backup", path)
else:
    os.unlink(path)
alerts("d", 50)
if notice:
    assert j.lost()
    alerts("e", 50)
os._exit(0)
"""


def crash_bot(path: Path, fault: str, notice: bool) -> None:
    subprocess.run(
        [sys.executable, "-c", BOT, str(REPO_ROOT), str(path), fault, "1" if notice else "0"],
        check=True,
        timeout=50,
    )


def tags(path: Path) -> dict[str, int]:
    """Alerts by kind in the file at ``path`` (its WAL applied), after an integrity check."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return dict(db.execute("SELECT kind, COUNT(*) FROM alerts GROUP BY kind").fetchall())
    finally:
        db.close()


def with_wal(tmp_path: Path, db: Path, wal: Path) -> Path:
    """A copy of ``db`` with ``wal`` as its WAL: how the rows kept aside are read back."""
    copy = tmp_path / "read-back.sqlite"
    shutil.copyfile(db, copy)
    shutil.copyfile(wal, wal_of(copy))
    return copy


def stale(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + "-wal.stale-*"))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "journal.sqlite"


ALL = {"a": 200, "b": 200, "c": 200, "d": 50}


@pytest.mark.integration
def test_a_crash_after_the_journal_was_replaced_leaves_the_replacement_intact(
    path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a bot killed after its journal was replaced by an older copy (before any look)
    crash_bot(path, "replace", notice=False)
    # When the next start opens the path: the replacement, whole, without the old WAL
    with Journal(path) as journal:
        assert journal.lost() is None
    assert tags(path) == {"a": 200}
    # Then the old file's WAL is kept aside, said, and with the old file holds every row
    [aside] = stale(path)
    assert "does not belong" in caplog.text and str(aside) in caplog.text
    assert tags(with_wal(tmp_path, path.with_name(path.name + ".aside"), aside)) == ALL


@pytest.mark.integration
def test_a_crash_after_the_journal_was_deleted_keeps_its_wal_aside(
    path: Path, tmp_path: Path
) -> None:
    crash_bot(path, "delete", notice=False)
    with Journal(path):
        pass
    assert tags(path) == {}  # a new journal
    [aside] = stale(path)  # not dropped by SQLite: kept, with the rows after the checkpoint
    assert tags(with_wal(tmp_path, path.with_name(path.name + ".aside"), aside)) == ALL


@pytest.mark.integration
def test_a_replaced_journal_noticed_is_followed_and_nothing_reaches_the_replacement(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a bot that looked (lost()) after the replacement, wrote on, then was killed
    crash_bot(path, "replace", notice=True)
    with Journal(path):
        pass
    # Then the replacement is intact, no WAL had to be set aside, and the file the bot had
    # opened (linked aside) holds every row, the later ones too
    assert tags(path) == {"a": 200}
    assert stale(path) == []
    assert tags(path.with_name(path.name + ".aside")) == {**ALL, "e": 50}


@pytest.mark.integration
def test_a_deleted_journal_noticed_is_copied_and_written_on(path: Path) -> None:
    # Given a journal deleted with no other name (rm) under a bot that looked, wrote on, died
    crash_bot(path, "unlink", notice=True)
    with Journal(path):
        pass
    # Then everything it journaled is in the copy it made, and the new journal is clean
    [copy] = sorted(path.parent.glob(path.name + ".lost-*[0-9Z]"))  # (not its -wal, -shm)
    assert tags(copy) == {**ALL, "e": 50}
    assert tags(path) == {} and stale(path) == []


@pytest.mark.integration
def test_a_crash_without_a_fault_keeps_its_wal_applied(path: Path) -> None:
    # SIGKILL alone: the WAL is the file's own, and SQLite applies it as always
    subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import os, sys; sys.path.insert(0, sys.argv[1]);"
                "from supervisor.journal.store import Journal; j = Journal(sys.argv[2]);"
                "[j.record_alert('2026-12-01', 'k', str(i), 0.0) for i in range(20)]; os._exit(0)"
            ),
            str(REPO_ROOT),
            str(path),
        ],
        check=True,
        timeout=50,
    )
    assert wal_of(path).stat().st_size > 0
    with Journal(path):
        pass
    assert tags(path) == {"k": 20} and stale(path) == []


def test_the_file_put_back_is_written_again(path: Path) -> None:
    journal = Journal(path)
    try:
        journal.record_alert("2026-12-01", "k", "before", 0.0)
        moved = path.with_name("moved.sqlite")
        path.rename(moved)
        assert journal.lost() is not None
        journal.record_alert("2026-12-01", "k", "while moved", 0.0)
        moved.rename(path)
        assert journal.lost() is None
        journal.record_alert("2026-12-01", "k", "back", 0.0)
    finally:
        journal.close()
    assert tags(path) == {"k": 3}


def test_the_lock_file_names_the_files_opened_below_the_pid(path: Path) -> None:
    lock = path.with_name(path.name + ".lock")
    with Journal(path):
        lines = lock.read_text().splitlines()
        assert lines[0].startswith("pid ") and lines[1] == owner_note(path) != ""
    assert len(lock.read_text().splitlines()) == 1  # closed: its WAL is gone, and the note


def test_a_wal_copied_with_its_journal_is_its_own(path: Path, tmp_path: Path) -> None:
    # Both files copied elsewhere (a restore of the folder): both inodes differ from the
    # note, so SQLite's own recovery decides, as before
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x" * 4096)
    wal_of(path).write_bytes(b"w" * 4096)
    note = owner_note(path)
    copy = tmp_path / "restored.sqlite"
    shutil.copyfile(path, copy)
    shutil.copyfile(wal_of(path), wal_of(copy))
    assert stale_reason(copy, note) is None
    assert stale_reason(path, note) is None  # the same two files
    assert stale_reason(path, "") is None  # no note: cannot be told
    wal_of(path).write_bytes(b"w" * 32)  # a header and no frame: nothing to apply
    path.unlink()
    assert stale_reason(path, note) is None


def test_a_read_only_close_leaves_no_wal_nor_shm_but_never_under_a_writer(path: Path) -> None:
    with Journal(path) as j:
        j.record_alert("2026-12-01", "a", "one", 1.0)
    # a report (or a backtest's summary) read after the run: nothing left beside the journal
    with Journal(path, readonly=True) as r:
        assert r._db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "journal.sqlite",
        "journal.sqlite.lock",
    ]
    # read while the bot writes: its WAL and shm stay, and it writes on
    with Journal(path) as j:
        with Journal(path, readonly=True):
            pass
        assert wal_of(path).exists() and Path(f"{path}-shm").exists()
        j.record_alert("2026-12-01", "b", "two", 2.0)
    with Journal(path, readonly=True) as r:
        assert r._db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 2
    assert not wal_of(path).exists() and not Path(f"{path}-shm").exists()
