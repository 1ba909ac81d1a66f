"""Secrets never echoed: a settings error masks any value whose key or content looks secret,
in ``validate`` and ``run`` alike; a gateway host off this machine is warned about."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.masking import masked_text, redacted, secret_name, secret_text
from common.settings_file import ConfigError, load_settings
from common.settings_warnings import loopback, settings_warnings
from supervisor.commands.cli import main
from tests.conftest import make_settings

TOKEN = "T0123/B0456/XyZsEcReT789tok"
SLACK = f"https://hooks.slack.com/services/{TOKEN}"


@pytest.mark.parametrize(
    "name",
    [
        "slack_webhook",
        "slack_webhok",
        "telegram_bot_tokn",
        "api_key",
        "password",
        "db-passwd",
        "client_secret",
        "AUTH",
    ],
)
def test_secret_key_names_misspelt_or_not(name):
    assert secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "host",
        "port",
        "account",
        "symbols",
        "keep_days",
        "heartbeat_interval_s",
        "telegram_chat_id",
        "monkey",
    ],
)
def test_ordinary_key_names(name):
    assert not secret_name(name)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (SLACK, True),
        ("https://hc-ping.com/5f2b1c9e", True),
        ("http://example.com/?token=abc", True),
        ("https://user:pw@example.com", True),
        ("hooks.slack.com/services/T0/B0/X", True),  # no scheme: still a URL with a path
        ("123456789:AAEhBOweik6ad9r_HVPRt5V2Jv2Bq", True),  # a Telegram bot token
        ("https://api.telegram.org", False),  # scheme and host only: no secret in it
        ("DU1234567", False),
        ("2026-01-08T10:30:00-05:00", False),
        ("var/journal-{broker}.sqlite", False),
        ("America/New_York", False),
    ],
)
def test_secret_content(text, secret):
    assert secret_text(text) is secret


def test_a_masked_url_keeps_its_scheme_and_host_only():
    assert masked_text(SLACK) == "https://hooks.slack.com/***"
    assert masked_text("https://u:p@example.com:8443/x?y=1") == "https://example.com:8443/***"
    assert masked_text("123:abc") == "***"
    assert redacted({"a": [SLACK, "SPY"], "password": 1234, "flag": True}) == {
        "a": ["https://hooks.slack.com/***", "SPY"],
        "password": "***",
        "flag": True,
    }


def problems(tmp_path: Path, text: str, **environ: str) -> str:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ=environ)
    return "\n".join(raised.value.problems)


@pytest.mark.parametrize(
    "text",
    [
        f"alerts:\n  slack_webhok: {SLACK}\n",  # the misspelt key of the issue
        f"alerts:\n  discord_webhook: [{SLACK}]\n",  # a wrong type under a secret field
        f"alerts:\n  telegram_bot_tokn: '{TOKEN}'\n",  # a misspelt secret key, not a URL
        f"universe:\n  symbols: [SPY, '{SLACK}']\n",  # a validator quoting the bad value
        f"{SLACK}: 1\n",  # a URL pasted as a key
        f"alerts:\n  x: 1\n  '{SLACK}': 1\n  '{SLACK}': 2\n",  # a key given twice
    ],
)
def test_no_settings_error_echoes_a_secret(tmp_path, text):
    said = problems(tmp_path, text)
    assert "xyzsecret789tok" not in said.lower(), said
    assert "t0123" not in said.lower(), said


def test_the_masked_error_still_says_where(tmp_path):
    said = problems(tmp_path, f"alerts:\n  slack_webhok: {SLACK}\n")
    assert said == (
        "alerts.slack_webhok: 'https://hooks.slack.com/***': unknown key; "
        "did you mean 'slack_webhook'?"
    )


def test_an_environment_override_is_masked_too(tmp_path):
    said = problems(tmp_path, "ibkr: {}\n", IBKR_PORT=SLACK)
    assert "xyzsecret789tok" not in said.lower() and "IBKR_PORT" in said


@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_never_print_it(tmp_path, capsys, command):
    path = tmp_path / "settings.yaml"
    path.write_text(f"alerts:\n  slack_webhok: {SLACK}\n")

    assert main([command, "--config", str(path)]) == 2

    out, err = capsys.readouterr()
    assert "alerts.slack_webhok: 'https://hooks.slack.com/***': unknown key" in err
    assert "xyzsecret789tok" not in (out + err).lower()


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("192.0.2.10", True),
        ("gateway.example.net", True),
        ("10.0.0.5", True),
        ("127.0.0.1", False),
        ("127.0.1.1", False),
        ("localhost", False),
        ("::1", False),
    ],
)
def test_a_gateway_off_this_machine_is_warned(tmp_path, host, warned):
    assert loopback(host) is not warned
    said = [
        w
        for w in settings_warnings(make_settings(tmp_path, ibkr={"host": host}))
        if "not encrypted" in w
    ]
    assert len(said) == warned
    if warned:
        assert said[0].startswith(f"ibkr.host {host} is not a loopback address")
