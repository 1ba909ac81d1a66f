"""Where ``phases`` and ``chaos`` put their files without ``--out``: the state folder (beside
``--config``, else the embedded default's), never the working directory; an unwritable
``--out`` is exit 2 naming it, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.locations import HOME_ENV
from supervisor.commands.cli import main
from supervisor.commands.phases import out_folder


def test_the_default_out_is_beside_the_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "bot" / "settings.yaml"
    assert out_folder(None, str(config), "phases") == tmp_path / "bot" / "var" / "phases"
    assert out_folder("elsewhere", str(config), "phases") == Path("elsewhere")


def test_the_embedded_default_s_out_is_its_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    assert out_folder(None, None, "chaos") == tmp_path / "home" / "var" / "chaos"


@pytest.mark.parametrize("command", [["phases", "--soak-cycles", "1"], ["chaos", "--cycles", "1"]])
def test_an_unwritable_out_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")  # root ignores modes: a file in the way
    out = tmp_path / "file" / "out"
    assert main([*command, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write into {out}" in err and "Traceback" not in err


def test_phases_without_out_writes_beside_the_config_not_the_cwd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a working directory where a var/ cannot be made, and a settings file elsewhere
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "var").write_text("", encoding="utf-8")
    monkeypatch.chdir(cwd)
    config = tmp_path / "bot" / "settings.yaml"
    config.parent.mkdir()
    config.write_text("broker: stub\n", encoding="utf-8")
    (config.parent / "var").write_text("", encoding="utf-8")  # stop it before the run
    # Then the refusal names the folder beside the settings, not ./var/phases
    assert main(["phases", "--config", str(config), "--soak-cycles", "1"]) == 2
    assert f"cannot write into {config.parent / 'var' / 'phases'}" in capsys.readouterr().err
