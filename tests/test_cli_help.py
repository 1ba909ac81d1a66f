"""--help as a user reads it: no source paths, no markup; --mode does not offer live."""

from __future__ import annotations

import pytest

from supervisor import exitcodes
from supervisor.commands.cli import EPILOG, build_parser

pytestmark = pytest.mark.timeout(30)

COMMANDS = ("run", "check", "phases", "report", "reconcile", "validate", "chaos")


@pytest.mark.parametrize("argv", [(), *((c,) for c in COMMANDS)])
def test_help_shows_no_source_paths_and_no_markup(argv, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*argv, "--help"])
    shown = capsys.readouterr().out
    assert done.value.code == 0
    assert "supervisor/" not in shown and ".py" not in shown, shown
    assert "``" not in shown and "`" not in shown, shown


def test_the_epilog_names_every_exit_code() -> None:
    assert all(f"{code} " in EPILOG for code in exitcodes.NAMES)


def test_run_mode_does_not_offer_live_and_says_how_live_is_set(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["run", "--mode", "live"])
    said = capsys.readouterr().err
    assert done.value.code == exitcodes.USAGE
    assert "{dry_run,whatif}" in said
    assert "execution.mode: live in the settings file" in said
    assert build_parser().parse_args(["run", "--mode", "whatif"]).mode == "whatif"
