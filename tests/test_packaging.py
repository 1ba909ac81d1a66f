"""The package installs like one: the wheel carries the embedded settings and scenarios (and
no tests or state), and a non-editable install works from any folder without writing into
site-packages; the embedded default's state folder follows common.locations' rule."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from common.locations import (
    CONFIGS_DIR,
    DEFAULT_CONFIG,
    DEFAULT_SCENARIO,
    default_home,
    is_checkout,
    scenario,
    user_state_dir,
)
from common.settings_file import settings_home
from tests.conftest import REPO_ROOT

# what a build of the checkout must not see: caches, state, earlier builds, the venvs
NOT_SOURCE = [".git", ".venv*", "__pycache__", "*.egg-info", ".*cache", ".hypothesis"]
NOT_SOURCE += ["build", "dist", "var", "data"]


def test_the_embedded_files_are_found_as_package_data_in_this_checkout() -> None:
    assert CONFIGS_DIR == REPO_ROOT / "configs"
    assert DEFAULT_CONFIG.is_file() and DEFAULT_SCENARIO.is_file()
    assert scenario("soak") == REPO_ROOT / "configs" / "scenarios" / "soak.yaml"


def test_setup_cfg_ships_every_scenario_and_the_settings_but_not_deploy() -> None:
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg", encoding="utf-8")
    patterns = setup["options.package_data"]["configs"].split()
    shipped = {p for pattern in patterns for p in CONFIGS_DIR.glob(pattern)}
    assert shipped == {DEFAULT_CONFIG, *(CONFIGS_DIR / "scenarios").glob("*.yaml")}
    assert "configs" in setup["options.packages.find"]["include"].split()


def test_a_checkout_keeps_the_embedded_default_s_state_under_the_project() -> None:
    assert is_checkout(REPO_ROOT)
    assert settings_home(DEFAULT_CONFIG, environ={}) == REPO_ROOT
    assert settings_home(DEFAULT_CONFIG, environ={"SUPERVISOR_HOME": "/srv/bot"}) == Path(
        "/srv/bot"
    )


def test_an_installed_copy_keeps_it_in_the_per_user_state_folder(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"  # what an install looks like: packages, no pyproject
    (site / "common").mkdir(parents=True)
    assert not is_checkout(site)
    env = {"HOME": "/home/u"}
    assert default_home(env, site) == Path("/home/u/.local/state/ibkr-bot")
    env["XDG_STATE_HOME"] = "/xdg/state"
    assert default_home(env, site) == Path("/xdg/state/ibkr-bot")
    env["XDG_STATE_HOME"] = "relative/state"  # the XDG rule: a relative value is ignored
    assert user_state_dir(env) == Path("/home/u/.local/state/ibkr-bot")


def test_a_settings_file_keeps_its_state_beside_itself_whatever_supervisor_home_says(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot" / "settings.yaml"
    assert settings_home(path, environ={"SUPERVISOR_HOME": "/elsewhere"}) == tmp_path / "bot"


def _build_wheel(out: Path) -> Path:
    """A wheel of a copy of the checkout (a build writes build/ and *.egg-info into its
    source, which must not be the working tree), built by this venv's setuptools (the test
    extra asks for one that builds wheels by itself) with no index: tests reach only
    127.0.0.1, so pip's isolated build, which downloads setuptools, is not an option."""
    src = out / "src"
    shutil.copytree(REPO_ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    (src / "var").mkdir()  # state a careless build would pick up
    (src / "var" / "journal-sim.sqlite").write_bytes(b"")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index"]
    done = subprocess.run(
        [*pip, "--no-build-isolation", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("ibkr_options_bot-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_wheel_carries_the_settings_and_scenarios_and_no_tests_or_state(
    wheel: Path,
) -> None:
    with zipfile.ZipFile(wheel) as built:
        names = built.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = built.read(entry_points).decode()
    assert "configs/settings.yaml" in names
    scenarios = {n for n in names if n.startswith("configs/scenarios/")}
    expected = {f"configs/scenarios/{p.name}" for p in (CONFIGS_DIR / "scenarios").glob("*")}
    assert scenarios == expected and "configs/scenarios/default.yaml" in scenarios
    static = {f"supervisor/observe/static/{n}" for n in ("index.html", "app.js", "app.css")}
    assert static <= set(names)  # the dashboard works installed
    tops = {n.split("/")[0] for n in names}
    assert {"common", "workers", "supervisor", "tools", "configs"} <= tops
    assert not tops & {"tests", "var", "docs", "build"}, tops
    assert not [n for n in names if n.startswith("configs/deploy/")]
    assert "ibkr-bot = supervisor.commands.cli:console" in scripts


def _installed(wheel: Path, where: Path) -> tuple[Path, Path]:
    """A fresh venv with the wheel installed in it, not editable. Its dependencies come from
    this venv's site-packages through a .pth line, so no index is needed and the test takes
    seconds; a .pth line only appends that folder to sys.path (its own .pth files, the
    checkout's editable finder among them, are not run), so the bot's code is the wheel's."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "_deps.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    # --ignore-installed: the checkout's editable install is visible through the .pth line
    done = subprocess.run(
        [*install, "--ignore-installed", str(wheel)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv, site


def _files(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_an_installed_copy_works_from_any_folder_and_writes_nothing_into_site_packages(
    wheel: Path, tmp_path: Path
) -> None:
    venv, site = _installed(wheel, tmp_path)
    bot = venv / "bin" / "ibkr-bot"
    work, empty, state = tmp_path / "work", tmp_path / "empty", tmp_path / "state"
    for folder in (work, empty):
        folder.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SUPERVISOR_HOME", "PYTHONPATH"} and not k.startswith("IBKR_")
    }
    env.update(HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(state))
    before = _files(site)

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(bot), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
        return done

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import common; print(common.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)  # the wheel's code, not the checkout's
    made = run(work, "init", "bot")
    assert "ibkr-bot run --config bot/settings.yaml --sim --cycles 2" in made.stdout
    run(work, "validate", "--config", "bot/settings.yaml")
    run(work, "run", "--config", "bot/settings.yaml", "--sim", "--cycles", "2")
    assert (work / "bot" / "var" / "journal-sim.sqlite").is_file()
    run(empty, "validate")
    run(empty, "run", "--sim", "--cycles", "1")
    assert (state / "ibkr-bot" / "var" / "journal-sim.sqlite").is_file()
    assert list(empty.iterdir()) == []
    assert _files(site) - before == set()
