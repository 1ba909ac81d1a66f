"""Where ``phases`` and ``chaos`` put their files without ``--out``: the state folder (beside
``--config``, else the embedded default's), never the working directory; an unwritable
``--out`` is exit 2 naming it, before anything runs."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from common.config import Settings
from common.locations import HOME_ENV
from supervisor.commands.check import CheckReport
from supervisor.commands.cli import build_parser, main
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


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_line_ends_before_the_market_s_own_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given phases on a terminal, with a market that prints a summary when it is shut (as the
    # simulator child does on stderr)
    from supervisor.commands import phases

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    @contextmanager
    def session(settings: Any, *args: Any) -> Iterator[tuple[Any, Any, Any]]:
        yield None, SimpleNamespace(now=lambda: 0.0), settings
        terminal.write("gateway_sim: 29 messages\n")

    async def check(*args: Any) -> CheckReport:
        return CheckReport("SPY", "stub", ok=True, price=1.0)

    def supervise(*args: Any, echo: Callable[[str], None], **kw: Any) -> tuple[int, Any]:
        echo("cycle 1")
        return 0, SimpleNamespace(cycles_done=1, failed_symbols_total=0)

    monkeypatch.setattr(phases, "broker_session", session)
    monkeypatch.setattr(phases, "run_check", check)
    monkeypatch.setattr(phases, "run_supervisor", supervise)
    monkeypatch.setattr(phases, "_verdict", lambda args, out: 0)
    args = build_parser().parse_args(["phases", "--soak-cycles", "1", "--out", str(tmp_path)])
    # When both phases run
    assert phases._run_phases(Settings(), args, tmp_path, "stub") == 0
    # Then each bar's line is ended before the summary is printed
    text = terminal.getvalue()
    assert text.count("\x1b[K\ngateway_sim: 29 messages\n") == 2, repr(text)


def test_the_plot_hint_installs_into_the_bot_s_own_interpreter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from supervisor.commands import phases

    monkeypatch.setattr(phases, "_can_plot", lambda: False)
    assert main(["phases", "--soak-cycles", "1", "--plot", "s.png"]) == 2
    err = capsys.readouterr().err
    assert f"{sys.executable} -m pip install matplotlib" in err and "-e ." not in err
