"""The three keys of live trading: execution.mode live in the settings file, --live on the
command line, ibkr.account equal to an account the gateway manages. Every combination is
judged by ``live_refusal``; the refusals are then proven end to end against the simulator,
which must see no order at all."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import Settings
from common.settings_file import ConfigError, journal_for, load_settings, origins_text
from supervisor.commands.cli import main
from supervisor.commands.options import with_overrides
from supervisor.commands.run import add_run_arguments
from supervisor.runtime.sessions import with_values
from supervisor.trading.execution import live_refusal
from tests.conftest import REPO_ROOT, make_settings

pytestmark = pytest.mark.timeout(120)

MANAGED = ["DU1234567"]


@pytest.mark.parametrize(
    ("file_mode", "cli_live", "account"),
    list(
        itertools.product(
            ["dry_run", "whatif", "live"], [False, True], ["DU1234567", "DU7654321", ""]
        )
    ),
)
def test_every_combination_of_the_keys(tmp_path, file_mode, cli_live, account):
    settings = make_settings(tmp_path, execution={"mode": file_mode}, ibkr={"account": account})
    why = live_refusal(settings, cli_live, "ibkr", MANAGED)
    if file_mode == "live" and cli_live and account == "DU1234567":
        assert why is None  # all three agree: the only way live
    elif file_mode != "live" and not cli_live:
        assert why is None  # not asking for live: dry-run or what-if, no guard needed
    elif file_mode != "live":
        assert why is not None and "execution.mode" in why
    elif not cli_live:
        assert why is not None and "--live" in why
    elif not account:
        assert why is not None and "ibkr.account" in why
    else:
        assert why is not None and "DU7654321" in why and "DU1234567" in why


def run_on_sim(
    tmp_path: Path, settings: str, *args: str, account_env: str | None = None
) -> tuple[subprocess.CompletedProcess[str], int]:
    config = tmp_path / "live.yaml"
    config.write_text(settings)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IBKR_")}
    environ["PYTHONPATH"] = str(REPO_ROOT)
    if account_env is not None:
        environ["IBKR_ACCOUNT"] = account_env
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "run",
            "--sim",
            "--config",
            str(config),
            "--cycles",
            "2",
            "--interval",
            "0.2",
            *args,
        ],
        cwd=tmp_path,
        env=environ,
        text=True,
        capture_output=True,
        timeout=100,
    )
    stats_file = tmp_path / "var" / "gateway_sim_stats.json"
    if "--mode" in args or "invalid settings" in done.stderr:
        # refused while reading the command line or the settings: no gateway was started
        return done, 0 if not stats_file.exists() else json.loads(stats_file.read_text())[
            "orders_received"
        ]
    return done, json.loads(stats_file.read_text())["orders_received"]


REFUSALS = {
    "a flag standing in for the settings key": (
        "execution:\n  mode: dry_run\n",
        ("--mode", "live", "--live"),
        "DU1234567",
        "execution.mode: live in the settings file",
    ),
    "no --live": (
        "execution:\n  mode: live\nibkr:\n  account: DU1234567\n",
        (),
        None,
        "lacks --live",
    ),
    "--live on a dry-run file": (
        "execution:\n  mode: dry_run\nibkr:\n  account: DU1234567\n",
        ("--live",),
        None,
        "execution.mode is 'dry_run'",
    ),
    "another account": (
        "execution:\n  mode: live\nibkr:\n  account: DU7654321\n",
        ("--live",),
        None,
        "DU7654321",
    ),
    "no account": ("execution:\n  mode: live\n", ("--live",), None, "ibkr.account"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refusal_names_the_missing_key_and_the_gateway_sees_no_order(tmp_path, case):
    settings, args, account_env, named = REFUSALS[case]
    done, received = run_on_sim(tmp_path, settings, *args, account_env=account_env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert named in done.stderr and "Traceback" not in done.stderr
    assert received == 0
    assert "cycle 1" not in done.stdout


@pytest.mark.e2e
def test_all_three_keys_reach_the_gateway(tmp_path):
    # the same harness, every key given: orders do arrive (the refusals above are not vacuous)
    done, received = run_on_sim(
        tmp_path, "execution:\n  mode: live\nibkr:\n  account: DU1234567\n", "--live"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert received > 0 and received % 3 == 0  # whole brackets only


# --- the environment, a fourth key: refused where it changes the account, said where it supplies

LIVE_DU999 = "execution:\n  mode: live\nibkr:\n  account: DU9999999\n"


@pytest.mark.e2e
def test_the_environment_naming_another_account_than_a_live_file_is_refused(tmp_path):
    done, received = run_on_sim(tmp_path, LIVE_DU999, "--live", account_env="DU1234567")

    assert done.returncode == 2, done.stderr[-2000:]
    assert "DU9999999" in done.stderr and "IBKR_ACCOUNT='DU1234567'" in done.stderr
    assert "Traceback" not in done.stderr
    assert received == 0


def settings_from(tmp_path: Path, text: str, **environ: str) -> Settings:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return load_settings(path, environ=environ)


def test_refused_where_the_file_is_read_naming_both_accounts_and_the_fix(tmp_path):
    with pytest.raises(ConfigError) as raised:
        settings_from(tmp_path, LIVE_DU999, IBKR_ACCOUNT="DU1234567")
    [problem] = raised.value.problems
    assert problem.startswith(
        "ibkr.account: the settings file names 'DU9999999' but IBKR_ACCOUNT='DU1234567'"
    )
    assert "unset IBKR_ACCOUNT" in problem


@pytest.mark.parametrize(
    ("text", "environ", "account", "origins"),
    [
        # outside live the variable overrides the connection as documented, and says so
        (
            "ibkr:\n  account: DU9999999\n",
            {"IBKR_ACCOUNT": "DU1234567"},
            "DU1234567",
            {"ibkr.account": "$IBKR_ACCOUNT"},
        ),
        # a live file naming no account: the variable supplies it, and says so
        (
            "execution:\n  mode: live\n",
            {"IBKR_ACCOUNT": "DU1234567"},
            "DU1234567",
            {"ibkr.account": "$IBKR_ACCOUNT"},
        ),
        # the same account in both: the file named it
        (LIVE_DU999, {"IBKR_ACCOUNT": "DU9999999"}, "DU9999999", {}),
        # empty is unset (docker compose passes ${IBKR_ACCOUNT:-}): the file's account stands
        (LIVE_DU999, {"IBKR_ACCOUNT": ""}, "DU9999999", {}),
        (
            'execution:\n  mode: "${BOT_MODE}"\n',
            {"BOT_MODE": "live"},
            "",
            {"execution.mode": "$BOT_MODE"},
        ),
    ],
)
def test_keys_the_environment_supplies_are_named(tmp_path, text, environ, account, origins):
    settings = settings_from(tmp_path, text, **environ)
    assert settings.ibkr.account == account
    assert settings.origins() == origins
    # the journal path filled in, a flag applied: still known where they came from
    assert (
        with_values(journal_for(settings, "ibkr"), {"schedule": {"cycles": 1}}).origins() == origins
    )


def test_the_start_text_names_the_variables(tmp_path):
    settings = settings_from(
        tmp_path, 'execution:\n  mode: "${BOT_MODE}"\n', BOT_MODE="live", IBKR_ACCOUNT="DU1234567"
    )
    assert origins_text(settings) == (
        "execution.mode live from $BOT_MODE, ibkr.account DU1234567 from $IBKR_ACCOUNT"
    )


def run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("text", "environ", "argv", "fix"),
    [
        (LIVE_DU999, {}, ("--mode", "whatif", "--live"), "drop --mode whatif to trade live"),
        (
            'execution:\n  mode: "${BOT_MODE}"\nibkr:\n  account: DU9999999\n',
            {"BOT_MODE": "whatif"},
            ("--live",),
            "set BOT_MODE=live, or drop --live",
        ),
        (
            "ibkr:\n  account: DU9999999\n",
            {},
            ("--live",),
            "set execution.mode: live in the settings file, or drop --live",
        ),
        (
            "execution:\n  mode: live\n",
            {"IBKR_ACCOUNT": "DU7654321"},
            ("--live",),
            "'DU7654321' (from $IBKR_ACCOUNT) is not the connected account",
        ),
    ],
)
def test_each_refusal_names_the_fix_for_where_the_value_came_from(
    tmp_path, text, environ, argv, fix
):
    settings = with_overrides(settings_from(tmp_path, text, **environ), run_args(*argv))
    why = live_refusal(settings, True, "ibkr", MANAGED)
    assert why is not None and fix in why, why
    assert "set it to live" not in why


def test_validate_says_what_the_environment_supplies(tmp_path, capsys, monkeypatch):
    path = tmp_path / "settings.yaml"
    path.write_text('execution:\n  mode: "${BOT_MODE}"\n')
    monkeypatch.setenv("BOT_MODE", "live")
    monkeypatch.setenv("IBKR_ACCOUNT", "DU1234567")

    assert main(["validate", "--config", str(path)]) == 0

    assert (
        "note: execution.mode live from $BOT_MODE, ibkr.account DU1234567 from $IBKR_ACCOUNT"
    ) in capsys.readouterr().out
