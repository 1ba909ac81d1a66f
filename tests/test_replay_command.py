"""``python -m supervisor replay``: its arguments, its journal, its summary (over a small
recording written here; the parity with a recorded ``run --sim`` is tests/test_replay_parity.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from supervisor import exitcodes
from supervisor.broker.replay import ModelledAnswer
from supervisor.commands.cli import main
from supervisor.commands.replay import journal_modelled
from supervisor.journal.store import Journal
from supervisor.recording import format as fmt
from tests.test_replay_broker import C1, C2, write_recording

BARS = {n: [C1 - 120.0, C1 - 60.0] for n in ("bar_ts", "open", "high", "low", "close", "volume")}
SETTINGS: dict[str, Any] = {"universe": {"symbols": ["SPY"]}}


def recording(root: Path, **meta: Any) -> Path:
    cycles = [{"ts": t, "cycle": i, "day": "2026-12-01"} for i, t in enumerate((C1, C2), 1)]
    quotes = [{"ts": t + 0.1, "symbol": "SPY", "bid": 680.0, "ask": 680.2} for t in (C1, C2)]
    bars = [
        {"ts": t + 0.2, "symbol": "SPY", "minutes": 60, "bar_minutes": 1, "rth": True} | BARS
        for t in (C1, C2)
    ]
    return write_recording(
        root,
        {fmt.CYCLES: cycles, fmt.QUOTES: quotes, fmt.BARS: bars},
        **({"settings": SETTINGS} | meta),
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SUPERVISOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_replay_journals_its_cycles_in_a_journal_of_its_own(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = recording(tmp_path / "sim-20261201T153000Z")
    assert main(["replay", str(root), "--json"]) == exitcodes.OK
    out = json.loads(capsys.readouterr().out)
    journal = home / "var" / "replays" / "sim-20261201T153000Z.sqlite"
    assert out["journal"] == str(journal) and out["cycles"] == 2 and out["symbol_cycles"] == 2
    for key in ("signals", "decisions", "trades", "pnl", "modelled", "results"):
        assert key in out
    # the account is not in the recording: modelled, said once, journaled as an alert
    assert out["modelled"] == 1 and out["modelled_by_kind"] == {"account": 1}
    assert out["modelled_contracts"] == 0
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT COUNT(*) FROM cycles").fetchone() == (2,)
        (alert,) = db.execute("SELECT kind, key, text FROM alerts").fetchall()
    assert alert[:2] == ("modelled", "account REPLAY") and alert[2].startswith(
        "1 answer(s) not in the recording"
    )
    assert not (home / "var" / "journal-sim.sqlite").exists()  # no market's journal touched

    # again: the journal is there, refused, and left as it was
    before = journal.stat().st_mtime_ns
    assert main(["replay", str(root)]) == exitcodes.USAGE
    assert "exists" in capsys.readouterr().err and journal.stat().st_mtime_ns == before


def test_the_text_summary_names_the_journal_and_the_report(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = recording(tmp_path / "rec")
    assert main(["replay", str(root), "--journal", str(tmp_path / "j.sqlite")]) == exitcodes.OK
    text = capsys.readouterr().out
    assert "replay of " in text and "2 cycles" in text
    assert f"report --journal {tmp_path / 'j.sqlite'}" in text


def test_bad_recordings_settings_and_journals_are_exit_2_with_nothing_journaled(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "none")]) == exitcodes.USAGE
    assert "not a directory" in capsys.readouterr().err
    bare = recording(tmp_path / "bare", settings=None)
    assert main(["replay", str(bare)]) == exitcodes.USAGE
    assert "holds no settings" in capsys.readouterr().err
    wrong = recording(tmp_path / "wrong", settings={"risk": {"max_open_positions": "many"}})
    assert main(["replay", str(wrong)]) == exitcodes.USAGE
    assert "risk.max_open_positions" in capsys.readouterr().err
    good = recording(tmp_path / "good")
    live = home / "var" / "journal-sim.sqlite"
    assert main(["replay", str(good), "--journal", str(live)]) == exitcodes.USAGE
    assert "a market's own journal" in capsys.readouterr().err
    assert not live.exists() and not (home / "var" / "replays").exists()


def test_other_settings_come_from_config(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("universe:\n  symbols: [SPY, QQQ]\n")
    root = recording(tmp_path / "rec")
    journal = tmp_path / "other.sqlite"
    assert main(["replay", str(root), "--config", str(config), "--journal", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "4 symbol-cycles" in out  # QQQ too: never recorded, so its symbol fails each cycle


def test_modelled_answers_are_one_alert_per_kind_contract_and_day_with_their_count(
    tmp_path: Path,
) -> None:
    how = "Black-Scholes at the IV of 20261204's recorded quotes, IV 0.2000"
    day2 = C1 + 86_400
    modelled = tuple(
        ModelledAnswer(ts, "option_quote", key, how)
        for ts, key in (
            (C1, "SPY 20261204 690C"),
            (C2, "SPY 20261204 690C"),
            (C2, "SPY 20261204 695C"),
            (day2, "SPY 20261204 690C"),
        )
    )
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    journal_modelled(path, modelled, "America/New_York")
    journal_modelled(path, (), "America/New_York")  # nothing modelled: nothing written
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT day, kind, key, text, ts FROM alerts ORDER BY day, key"
        ).fetchall()
    assert [r[:3] for r in rows] == [
        ("2026-12-01", "modelled", "option_quote SPY 20261204 690C"),
        ("2026-12-01", "modelled", "option_quote SPY 20261204 695C"),
        ("2026-12-02", "modelled", "option_quote SPY 20261204 690C"),
    ]
    assert (
        rows[0][3].startswith("2 answer(s) not in the recording, modelled")
        and how in rows[0][3]
        and rows[0][4] == C1
    )
    assert rows[1][3].startswith("1 answer(s)")


def test_ctrl_c_mid_replay_leaves_no_half_written_journal(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import supervisor.commands.replay as command

    real = command.run_offline

    async def interrupted(settings: Any, broker: Any, clock: Any, times: Any, *a: Any, **k: Any):
        def until_ctrl_c() -> Any:  # Ctrl-C after the first cycle, as asyncio.run raises it
            for n, t in enumerate(times):
                if n == 1:
                    raise KeyboardInterrupt
                yield t

        return await real(settings, broker, clock, until_ctrl_c(), *a, **k)

    monkeypatch.setattr(command, "run_offline", interrupted)
    root, journal = recording(tmp_path / "rec"), tmp_path / "out" / "j.sqlite"
    assert main(["replay", str(root), "--journal", str(journal), "--json"]) == exitcodes.OK
    out, err = capsys.readouterr()
    assert out == "" and f"interrupted; the half-written {journal} removed" in err
    assert list(journal.parent.iterdir()) == []  # no journal, -wal, -shm or .lock
