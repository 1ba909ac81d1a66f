"""The settings file: the embedded default, unknown keys, bad values, YAML errors, env overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from common.config import DEFAULT_CONFIG, PROJECT_ROOT, Settings
from common.settings_file import (
    ConfigError,
    anchored,
    journal_for,
    load_settings,
    parse_settings,
)
from tests.sessions import STUB_SESSION

pytestmark = pytest.mark.timeout(30)


def write(tmp_path: Path, text: str, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(raw: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, "test", environ={} if environ is None else environ)
    assert info.value.problems, "a ConfigError must say what is wrong"
    return info.value.problems


def only_problem(raw: Any, environ: dict[str, str] | None = None) -> str:
    problems = problems_of(raw, environ)
    assert len(problems) == 1, problems
    return problems[0]


# --- the embedded settings file --------------------------------------------------------------


def test_embedded_settings_load_and_match_the_documented_values() -> None:
    # Given the settings.yaml shipped with the bot, and no environment overrides
    # When it is loaded
    settings = load_settings(environ={})

    # Then the values it spells out are the ones the file says
    assert settings.universe.symbols == ["SPY", "QQQ", "AAPL"]
    assert settings.universe.max_concurrent_symbols == "auto"
    assert settings.schedule.cycle_deadline_s == "auto"
    assert settings.options.strikes_each_side == 5
    assert settings.options.strike_count == 3
    assert settings.options.stop_loss_pct == 30.0
    assert settings.quotes.price_sources == ["mid", "last", "close"]
    assert settings.ibkr.port == 4002
    assert settings.execution.mode == "dry_run"
    assert settings.strategy.scalp.ema_fast == 8
    assert settings.strategy.scalp.ema_slow == 21
    assert settings.stub.start == datetime(2026, 1, 8, 15, 30, tzinfo=UTC)
    # the end-to-end stub runs replay this session: it is the one tests/sessions.py names
    assert settings.stub.start == STUB_SESSION


def test_embedded_settings_equal_the_model_defaults() -> None:
    # The file documents the defaults: a drift between the two would surprise whoever
    # runs without a config file.
    assert load_settings(DEFAULT_CONFIG, environ={}) == anchored(Settings(), PROJECT_ROOT)


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing set\n")
    assert load_settings(path, environ={}) == anchored(Settings(), tmp_path.resolve())


# --- unknown keys ----------------------------------------------------------------------------


def test_unknown_top_level_key_is_named() -> None:
    problem = only_problem({"universe": {"symbols": ["SPY"]}, "optoins": {}})
    assert problem.startswith("optoins: ")
    assert "unknown key" in problem


def test_unknown_nested_key_names_its_full_path(tmp_path: Path) -> None:
    # Given a typo inside a section
    path = write(tmp_path, "options:\n  strike_cnt: 3\n")

    # When the file is loaded
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})

    # Then the problem names options.strike_cnt, its value and "unknown key"
    assert info.value.source == str(path)
    assert info.value.problems == [
        "options.strike_cnt: 3: unknown key; did you mean 'strike_count'?"
    ]
    assert "options.strike_cnt" in str(info.value)


def test_unknown_key_two_levels_down() -> None:
    problem = only_problem({"strategy": {"scalp": {"ema_fats": 5}}})
    assert problem.startswith("strategy.scalp.ema_fats: 5: ")
    assert "unknown key" in problem


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of({"options": {"strike_cnt": 3}, "ibkr": {"port": 0}})
    assert len(problems) == 2
    assert any(p.startswith("options.strike_cnt") for p in problems)
    assert any(p.startswith("ibkr.port") for p in problems)


# --- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path", "shown", "reason_word"),
    [
        (
            {"universe": {"max_concurrent_symbols": 0}},
            "universe.max_concurrent_symbols",
            "0",
            "auto or a whole number from 1 to 1000",
        ),
        (
            {"schedule": {"cycle_deadline_s": "soon"}},
            "schedule.cycle_deadline_s",
            "'soon'",
            "auto or a number from 1 to 86400",
        ),
        ({"ibkr": {"port": 70000}}, "ibkr.port", "70000", "less than or equal to 65535"),
        ({"ibkr": {"port": 0}}, "ibkr.port", "0", "greater than or equal to 1"),
        ({"options": {"moneyness": "sideways"}}, "options.moneyness", "'sideways'", "'atm'"),
        ({"risk": {"risk_per_trade_pct": 0}}, "risk.risk_per_trade_pct", "0", "greater than 0"),
        (
            {"options": {"max_spread_pct": 101}},
            "options.max_spread_pct",
            "101",
            "less than or equal to 100",
        ),
        ({"execution": {"mode": "yolo"}}, "execution.mode", "'yolo'", "'dry_run'"),
        ({"workers": {"count": "two"}}, "workers.count", "'two'", "integer"),
        (
            {"pacing": {"max_messages_per_s": 51}},
            "pacing.max_messages_per_s",
            "51",
            "less than or equal to 50",
        ),
    ],
)
def test_bad_value_names_path_value_and_reason(
    raw: dict[str, Any], path: str, shown: str, reason_word: str
) -> None:
    problem = only_problem(raw)
    name, value, reason = problem.split(": ", 2)
    assert name == path
    assert value == shown
    assert reason_word in reason


def test_accepted_bounds_of_a_limited_field() -> None:
    # Just inside the limits is fine: 1 and 65535 are valid ports.
    assert parse_settings({"ibkr": {"port": 1}}, environ={}).ibkr.port == 1
    assert parse_settings({"ibkr": {"port": 65_535}}, environ={}).ibkr.port == 65_535


@pytest.mark.parametrize(("fast", "slow"), [(21, 21), (30, 21)])
def test_ema_fast_not_below_ema_slow_is_refused(fast: int, slow: int) -> None:
    problem = only_problem({"strategy": {"scalp": {"ema_fast": fast, "ema_slow": slow}}})
    assert problem.startswith("strategy.scalp: ")
    assert f"ema_fast ({fast}) must be below ema_slow ({slow})" in problem


def test_ema_fast_just_below_ema_slow_is_accepted() -> None:
    settings = parse_settings({"strategy": {"scalp": {"ema_fast": 20, "ema_slow": 21}}}, environ={})
    assert (settings.strategy.scalp.ema_fast, settings.strategy.scalp.ema_slow) == (20, 21)


def test_min_dte_above_max_dte_is_refused() -> None:
    problem = only_problem({"options": {"min_dte": 8, "max_dte": 7}})
    assert problem.startswith("options: ")
    assert "min_dte (8) exceeds max_dte (7)" in problem


def test_min_dte_equal_to_max_dte_is_accepted() -> None:
    settings = parse_settings({"options": {"min_dte": 7, "max_dte": 7}}, environ={})
    assert settings.options.min_dte == settings.options.max_dte == 7


def test_rsi_buy_band_upside_down_is_refused() -> None:
    problem = only_problem({"strategy": {"scalp": {"rsi_buy_low": 80, "rsi_buy_high": 70}}})
    assert "rsi_buy_low must not exceed rsi_buy_high" in problem


def test_unquoted_time_is_refused_not_misread(tmp_path: Path) -> None:
    # YAML 1.1 reads an unquoted 16:00 as the base-60 integer 960: it must not pass as a time.
    path = write(tmp_path, "schedule:\n  close_time: 16:00\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.problems[0].startswith("schedule.close_time: 960: ")
    # and it says what happened and what to write instead
    assert info.value.problems[0].endswith(
        "YAML reads a bare 16:00 as the number 960: write '16:00' in quotes"
    )


def test_a_quoted_time_and_a_plain_number_carry_no_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "schedule:\n  close_time: '16:00'\n  cycles: -1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.problems == [
        "schedule.cycles: -1: Input should be greater than or equal to 0"
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"universe": {"symbol": ["SPY"]}},
            "universe.symbol: ['SPY']: unknown key; did you mean 'symbols'?",
        ),
        ({"shedule": {}}, "shedule: {...}: unknown key; did you mean 'schedule'?"),
        (
            {"options": {"strike_cnt": 3}},
            "options.strike_cnt: 3: unknown key; did you mean 'strike_count'?",
        ),
        ({"risk": {"zzz": 1}}, "risk.zzz: 1: unknown key"),
    ],
)
def test_an_unknown_key_close_to_a_real_one_names_it(raw: Any, expected: str) -> None:
    assert only_problem(raw) == expected


# --- the file itself -------------------------------------------------------------------------


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    # Given a second colon on line 3, which YAML does not allow in a plain value
    path = write(tmp_path, "ibkr:\n  port: 4002\n  host: a: b\n")

    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})

    [problem] = info.value.problems
    assert "line 3" in problem
    assert "not valid YAML" in problem
    assert info.value.source == str(path)


def test_an_unclosed_bracket_is_placed_where_it_was_opened(tmp_path: Path) -> None:
    # PyYAML gives up lines later (here on line 5); the line to fix is the '[' on line 3
    path = write(tmp_path, "broker: stub\nuniverse:\n  symbols: [SPY, QQQ\n\nschedule: {}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    [problem] = info.value.problems
    assert problem.startswith("line 3, column 12: not valid YAML (while parsing a flow sequence")
    assert problem.endswith("at line 5, column 9)")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.source == str(path)
    assert "cannot read the file" in info.value.problems[0]


@pytest.mark.parametrize("text", ["- SPY\n- QQQ\n", "just a string\n", "42\n"])
def test_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    [problem] = info.value.problems
    assert problem.startswith("(top level): ")
    assert "expected a mapping" in problem


@pytest.mark.parametrize("section", ["localhost", [4002, 4001]])
def test_a_non_mapping_ibkr_section_is_a_config_error(section: Any) -> None:
    problem = only_problem({"ibkr": section})
    assert problem.startswith("ibkr: ")


def test_a_non_mapping_section_other_than_ibkr_is_a_config_error() -> None:
    problem = only_problem({"options": "atm"})
    assert problem.startswith("options: 'atm': ")


# --- environment overrides -------------------------------------------------------------------


def test_env_overrides_the_connection(tmp_path: Path) -> None:
    # Given a file that sets the connection and environment variables that disagree
    path = write(tmp_path, "ibkr:\n  host: 10.0.0.1\n  port: 4002\n  client_id: 1\n")
    environ = {
        "IBKR_HOST": "gateway.local",
        "IBKR_PORT": "4001",
        "IBKR_CLIENT_ID": "17",
        "IBKR_ACCOUNT": "DU123456",
    }

    # When loaded
    ibkr = load_settings(path, environ=environ).ibkr

    # Then the environment wins, converted to the field types
    assert (ibkr.host, ibkr.port, ibkr.client_id, ibkr.account) == (
        "gateway.local",
        4001,
        17,
        "DU123456",
    )


def test_env_override_without_an_ibkr_section_keeps_the_other_defaults() -> None:
    settings = parse_settings({}, environ={"IBKR_PORT": "7497"})
    assert settings.ibkr.port == 7497
    assert settings.ibkr.host == "127.0.0.1"
    assert settings.ibkr.client_id == 1


def test_unrelated_env_is_ignored() -> None:
    settings = parse_settings({"ibkr": {"port": 4002}}, environ={"IBKR_PROT": "1", "PORT": "2"})
    assert settings.ibkr.port == 4002


def test_non_integer_port_in_env_names_the_variable() -> None:
    problem = only_problem({}, environ={"IBKR_PORT": "4002x"})
    assert "IBKR_PORT" in problem
    assert "'4002x'" in problem


def test_non_integer_client_id_in_env_names_the_variable() -> None:
    problem = only_problem({}, environ={"IBKR_CLIENT_ID": "one"})
    assert "IBKR_CLIENT_ID" in problem


def test_env_port_out_of_range_is_validated_like_the_file() -> None:
    problem = only_problem({}, environ={"IBKR_PORT": "70000"})
    assert problem.startswith("ibkr.port: 70000: ")


# --- individual fields -----------------------------------------------------------------------


@pytest.mark.parametrize("sources", [["mid", "last", "close"], ["last", "close", "mid"], ["close"]])
def test_price_sources_keep_the_configured_order(sources: list[str]) -> None:
    settings = parse_settings({"quotes": {"price_sources": sources}}, environ={})
    assert settings.quotes.price_sources == sources


@pytest.mark.parametrize("sources", [[], ["bid"], ["mid", "vwap"]])
def test_bad_price_sources_are_refused(sources: list[str]) -> None:
    problems = problems_of({"quotes": {"price_sources": sources}})
    assert all(p.startswith("quotes.price_sources") for p in problems)


def test_symbols_are_upper_cased_and_stripped() -> None:
    settings = parse_settings({"universe": {"symbols": ["spy", " qqq ", "Brk.B"]}}, environ={})
    assert settings.universe.symbols == ["SPY", "QQQ", "BRK.B"]


@pytest.mark.parametrize("symbols", [["SPY", "QQQ", "SPY"], ["SPY", "spy"]])
def test_duplicate_symbols_are_refused(symbols: list[str]) -> None:
    problem = only_problem({"universe": {"symbols": symbols}})
    assert problem.startswith("universe.symbols: ")
    assert "more than once" in problem


@pytest.mark.parametrize("symbols", [[], ["SPY", ""], ["SP-Y"]])
def test_empty_or_malformed_symbols_are_refused(symbols: list[str]) -> None:
    problem = only_problem({"universe": {"symbols": symbols}})
    assert problem.startswith("universe.symbols: ")


def test_stub_start_without_utc_offset_is_refused() -> None:
    problem = only_problem({"stub": {"start": "2026-01-08T10:30:00"}})
    assert problem.startswith("stub.start: ")
    assert "UTC offset" in problem


def test_stub_start_with_offset_is_kept() -> None:
    settings = parse_settings({"stub": {"start": "2026-01-08T09:45:00-05:00"}}, environ={})
    assert settings.stub.start == datetime(2026, 1, 8, 9, 45, tzinfo=timezone(timedelta(hours=-5)))
    assert settings.stub.start.timestamp() == datetime(2026, 1, 8, 14, 45, tzinfo=UTC).timestamp()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError):
        settings.ibkr.port = 1  # type: ignore[misc]


# --- where the files go: anchored at the settings, never at the working directory ---------


def test_relative_paths_are_anchored_at_the_settings_files_directory(tmp_path, monkeypatch):
    folder = tmp_path / "bot"
    folder.mkdir()
    (folder / "live.yaml").write_text(
        "logging:\n  json_path: logs/bot.jsonl\nmonitoring:\n  metrics_path: /abs/metrics.jsonl\n"
    )
    monkeypatch.chdir(tmp_path)  # started from elsewhere, as cron would
    settings = load_settings("bot/live.yaml", environ={})
    assert settings.execution.journal_path == str(folder.resolve() / "var/journal-{broker}.sqlite")
    assert settings.logging.json_path == str(folder.resolve() / "logs/bot.jsonl")
    assert settings.monitoring.metrics_path == "/abs/metrics.jsonl"  # absolute stays
    assert settings.monitoring.gateway_log_path == ""  # unset stays unset


def test_the_embedded_default_lives_in_supervisor_home_or_the_project(tmp_path):
    assert load_settings(environ={}).execution.journal_path.startswith(str(PROJECT_ROOT))
    homed = load_settings(environ={"SUPERVISOR_HOME": str(tmp_path)})
    assert homed.logging.json_path == str(tmp_path.resolve() / "var/bot.jsonl")


def test_each_broker_gets_its_own_journal(tmp_path):
    settings = load_settings(environ={"SUPERVISOR_HOME": str(tmp_path)})
    paths = {b: journal_for(settings, b).execution.journal_path for b in ("stub", "sim", "ibkr")}
    assert len(set(paths.values())) == 3 and paths["stub"].endswith("journal-stub.sqlite")


def test_an_unknown_journal_path_field_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"execution": {"journal_path": "var/{account}.sqlite"}}, environ={})
    assert any(
        p.startswith("execution.journal_path") and "{broker}" in p for p in info.value.problems
    )


def test_secrets_come_from_the_environment_and_an_unset_one_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "alerts:\n  slack_webhook: https://hooks.slack.com/${SLACK_PATH}\n"
        "  telegram_chat_id: '${CHAT}'\n",
    )
    settings = load_settings(path, environ={"SLACK_PATH": "T0/B0/secret", "CHAT": "42"})
    assert settings.alerts.slack_webhook is not None
    assert settings.alerts.slack_webhook.get_secret_value() == (
        "https://hooks.slack.com/T0/B0/secret"
    )
    assert "secret" not in repr(settings.alerts)
    assert settings.alerts.telegram_chat_id == "42"
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"CHAT": "42"})
    assert caught.value.problems == [
        "alerts.slack_webhook: ${SLACK_PATH} is not set in the environment"
    ]


def test_an_unset_or_empty_variable_is_reported_with_every_other_mistake(tmp_path: Path) -> None:
    # Given a webhook whose variable is empty, a token whose variable is unset, an unknown key
    # and an unquoted time
    path = write(
        tmp_path,
        "universe:\n  symbol: [SPY]\nschedule:\n  close_time: 16:00\n"
        "alerts:\n  slack_webhook: https://hooks.slack.com/${SLACK_PATH}\n"
        "  telegram_bot_token: ${BOT_TOKEN}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"SLACK_PATH": ""})
    # Then all four are reported, each naming its key (and the variable)
    problems = caught.value.problems
    assert problems[:2] == [
        "alerts.slack_webhook: ${SLACK_PATH} is empty in the environment",
        "alerts.telegram_bot_token: ${BOT_TOKEN} is not set in the environment",
    ]
    assert [p.split(":")[0] for p in problems[2:]] == ["universe.symbol", "schedule.close_time"]
    # and an empty value never becomes part of the URL
    assert not any("hooks.slack.com" in p for p in problems)


def test_a_default_fills_an_unset_or_empty_variable(tmp_path: Path) -> None:
    # compose's ${VAR:-default}, which users copy: taken literally it was a host named
    # '${H:-localhost}' with only a non-loopback warning
    path = write(tmp_path, "ibkr:\n  host: ${H:-localhost}\n  port: ${P:-4002}\n")
    for environ in ({}, {"H": "", "P": ""}):
        settings = load_settings(path, environ=environ)
        assert (settings.ibkr.host, settings.ibkr.port) == ("localhost", 4002)
    settings = load_settings(path, environ={"H": "127.0.0.2", "P": "4001"})
    assert (settings.ibkr.host, settings.ibkr.port) == ("127.0.0.2", 4001)
    # a literal $ is $$; a plain ${VAR} unset stays an error
    path = write(tmp_path, "ibkr:\n  host: $$H\n  account: ${ACCOUNT}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.problems[0] == "ibkr.account: ${ACCOUNT} is not set in the environment"


def test_other_shell_forms_are_refused_naming_the_key_and_what_works(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ibkr:\n  host: ${H:?set H}\n  account: $ACCOUNT\n"
        "alerts:\n  slack_webhook: https://hooks.slack.com/${SLACK_PATH:-}\n"
        "  telegram_bot_token: pa$sword\n  telegram_chat_id: '${CHAT'\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"H": "localhost", "SLACK_PATH": "x"})
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "ibkr.host",
        "ibkr.account",
        "alerts.slack_webhook",
        "alerts.telegram_bot_token",
        "alerts.telegram_chat_id",
    ]
    assert problems[0].startswith("ibkr.host: ${H:?set H}: not a supported form (supported: ")
    assert "${NAME:-default}" in problems[0]
    assert problems[1].startswith("ibkr.account: $ACCOUNT is not expanded: write ${NAME}")
    assert "${SLACK_PATH:-}: an empty default is no value" in problems[2]
    assert "sword" not in problems[3]  # part of a secret is never echoed
    assert "without a closing '}'" in problems[4]
