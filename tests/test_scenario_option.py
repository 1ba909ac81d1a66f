"""``--scenario`` (common/locations.find_scenario): a shipped scenario by its name, as an
installed copy has no configs/scenarios/ in the user's folder; a file still works; anything
else is exit 2 naming where it looked and the shipped names."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.locations import DEFAULT_SCENARIO, find_scenario, scenario, scenario_names
from supervisor.commands.cli import main

pytestmark = pytest.mark.timeout(30)


def test_a_shipped_name_is_found_from_any_folder(tmp_path: Path) -> None:
    assert find_scenario("faults", tmp_path)[0] == scenario("faults")
    assert find_scenario("faults.yaml", tmp_path)[0] == scenario("faults")
    assert find_scenario(None, tmp_path)[0] == DEFAULT_SCENARIO
    assert {"default", "faults", "soak"} <= set(scenario_names())


def test_a_file_wins_over_a_shipped_name_and_a_path_still_works(tmp_path: Path) -> None:
    mine = tmp_path / "faults"  # a user's file that happens to share a shipped name
    mine.write_text("name: mine\n", encoding="utf-8")
    assert find_scenario("faults", tmp_path)[0] == mine.resolve()
    assert find_scenario(str(mine), Path("/"))[0] == mine.resolve()


def test_a_missing_scenario_is_exit_2_naming_what_was_looked_for(tmp_path: Path, capsys) -> None:
    (tmp_path / "settings.yaml").write_text("broker: stub\n", encoding="utf-8")
    code = main(
        ["check", "--sim", "--config", str(tmp_path / "settings.yaml"), "--scenario", "fault"]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--scenario fault: no such scenario" in err and str(scenario("fault")) in err
    assert ", ".join(scenario_names()) in err and "Traceback" not in err


def test_help_says_the_default_is_the_shipped_one_not_a_checkout_path(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "default: the shipped default" in out and "faults" in out
    assert "configs/scenarios" not in out
