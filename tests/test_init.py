"""``init DIR``: a commented first settings file that validates, never written over one."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from common.settings_file import load_settings
from supervisor.commands.cli import build_parser, main
from supervisor.commands.init import next_commands


def test_init_writes_a_paper_dry_run_file_that_validates_with_state_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path / "bot")]) == 0
    path = tmp_path / "bot" / "settings.yaml"
    text = path.read_text(encoding="utf-8")
    settings = load_settings(path, environ={})
    assert settings.broker == "ibkr"
    assert settings.ibkr.port == 4002
    assert settings.execution.mode == "dry_run"
    assert settings.ibkr.account == ""
    account_line = next(line for line in text.splitlines() if line.startswith("  account:"))
    assert "FILL IN" in account_line  # the comment tells the user it is theirs to fill
    assert settings.execution.journal_path == str(tmp_path / "bot" / "var/journal-{broker}.sqlite")
    assert settings.logging.json_path == str(tmp_path / "bot" / "var" / "bot.jsonl")
    assert main(["validate", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {path}" in out
    for command in next_commands(path, "python -m supervisor"):
        assert command in out


def test_the_next_commands_parse_with_the_bot_s_own_command_line(tmp_path: Path) -> None:
    commands = next_commands(tmp_path / "my bot" / "settings.yaml", "ibkr-bot")
    assert [c.split()[1] for c in commands] == ["doctor", "run", "phases"]
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        assert args.config == str(tmp_path / "my bot" / "settings.yaml")  # quoted: one word


def test_init_refuses_to_overwrite_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("universe:\n  symbols: [QQQ]\n", encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 2
    assert path.read_text(encoding="utf-8") == "universe:\n  symbols: [QQQ]\n"
    assert "already exists" in capsys.readouterr().err


def test_init_refuses_a_dangling_link_in_the_file_s_place(tmp_path: Path) -> None:
    # writing through it would create a file wherever the link points
    (tmp_path / "settings.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    assert main(["init", str(tmp_path)]) == 2
    assert not (tmp_path / "elsewhere.yaml").exists()


def test_init_into_a_folder_that_cannot_be_made_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    assert main(["init", str(tmp_path / "file" / "bot")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_the_printed_phases_step_gives_phase_3_a_length(tmp_path: Path) -> None:
    # phases refuses to start without --soak-s or --soak-cycles: the printed step must run
    command = next_commands(tmp_path / "bot" / "settings.yaml", "ibkr-bot")[2]
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.soak_s > 0 or args.soak_cycles > 0


def test_init_into_a_regular_file_says_it_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("keep\n", encoding="utf-8")
    assert main(["init", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'afile'} is a file, not a folder" in err and "already exists" not in err
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "keep\n"


def test_init_keeps_the_folder_out_of_git_and_quotes_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "my bot"
    assert main(["init", str(folder)]) == 0
    assert (folder / ".gitignore").read_text(encoding="utf-8").splitlines()[-1] == "*"
    first = (folder / "settings.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first.endswith(f"validate --config {shlex.quote(str(folder / 'settings.yaml'))}")
    # a .gitignore of the user's own is left alone
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ".gitignore").write_text("var/\n", encoding="utf-8")
    assert main(["init", str(mine)]) == 0
    assert (mine / ".gitignore").read_text(encoding="utf-8") == "var/\n"
