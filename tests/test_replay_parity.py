"""The parity check: ``run --sim`` (recording on, as by default), then ``replay`` of its
recording journals the same signals, intents, decisions and positions; with other
settings (a later expiry) the decisions differ where they should, and the answers the
recording never had are modelled and journaled as such."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.commands.cli import main
from supervisor.journal.store import Journal
from tests.conftest import REPO_ROOT
from tests.test_cli_e2e import run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TIMES = ("opened_ts", "closed_ts")  # within a cycle the replay's clock is the cycle's start


def compared(journal: Path) -> dict[str, Any]:
    """What the parity covers, of every day of ``journal``."""
    with Journal(journal, readonly=True) as j:
        days = j.days_between("0000-01-01", "9999-12-31")
        summaries = [j.day_summary(day) for day in days]
    out: dict[str, Any] = {"days": days}
    for s in summaries:
        positions = s["positions"]
        out[s["day"]] = {
            "cycles": s["cycles"]["count"],
            "signals": s["signals"],
            "intents": s["intents"],
            "decisions": s["decisions"],
            "positions": {
                "opened": positions["opened"],
                **{
                    side: [{k: v for k, v in p.items() if k not in TIMES} for p in positions[side]]
                    for side in ("open", "closed")
                },
            },
        }
    return out


def test_a_replay_of_a_recorded_sim_run_journals_what_the_run_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the default scenario a minute per second: the entries fill, get marked, time out
    scenario = yaml.safe_load((REPO_ROOT / "configs" / "scenarios" / "default.yaml").read_text())
    scenario["clock"]["rate"] = 60
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(scenario))
    done = run(
        tmp_path, "run", "--sim", "--scenario", "fast.yaml", "--cycles", "8", "--interval", "60"
    )
    assert done.returncode == 0, done.stderr
    (recording,) = (tmp_path / "var" / "recordings").iterdir()
    assert f"recording to {recording}" in done.stderr  # the start line names it

    monkeypatch.setenv("SUPERVISOR_HOME", str(tmp_path))
    assert main(["replay", str(recording), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cycles"] == 8 and out["journal"].startswith(str(tmp_path / "var" / "replays"))
    original = compared(tmp_path / "var" / "journal-sim.sqlite")
    assert original[original["days"][0]]["intents"]["recorded"] >= 1  # something to compare
    assert compared(Path(out["journal"])) == original
    assert out["modelled_contracts"] == 0  # every option quote was recorded

    # a later expiry than the run chose: never recorded, so modelled, and other intents
    other = tmp_path / "later.yaml"
    other.write_text("options:\n  expiry_rule: dte_window\n  min_dte: 8\n  max_dte: 20\n")
    journal = tmp_path / "later.sqlite"
    args = ["replay", str(recording), "--config", str(other), "--journal", str(journal)]
    assert main([*args, "--json"]) == 0
    later = json.loads(capsys.readouterr().out)
    assert later["modelled_contracts"] > 0
    with Journal(journal, readonly=True) as j:
        day = j.days_between("0000-01-01", "9999-12-31")[0]
        alerts = [a for a in j.day_summary(day)["alerts"] if a["kind"] == "modelled"]
    accounts = 1 if "account" in later["modelled_by_kind"] else 0  # until recordings hold it
    assert len(alerts) == later["modelled_contracts"] + accounts
    assert any(
        str(a["key"]).startswith("option_quote") and "Black-Scholes" in a["text"] for a in alerts
    )
    assert compared(journal)[day]["signals"] == original[day]["signals"]  # the same market
    contracts = {
        p["contract"] for side in ("open", "closed") for p in original[day]["positions"][side]
    }
    later_contracts = {
        p["contract"]
        for side in ("open", "closed")
        for p in compared(journal)[day]["positions"][side]
    }
    assert later_contracts and later_contracts.isdisjoint(contracts)
