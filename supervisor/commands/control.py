"""``pause``, ``resume``, ``flatten``, ``kill``: the trader's controls of a running bot.

    settings file (--config) --> its status port (monitoring.http_port) and its token
        (monitoring.control_token, or control.token beside the journal, written by the bot
        at start: runtime/controls.py)
    --> POST http://127.0.0.1:PORT/api/<action> (or monitoring.bind's address),
        Authorization: Bearer <token>,
        X-Control-Source: cli --> the bot's answer printed

Exit codes: 0 done (or accepted, acting once the desk is free), 2 the settings name no
status port or no token, or the bot refused, 3 no bot answers on that port.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

from supervisor import exitcodes
from supervisor.commands.options import load
from supervisor.observe.http_status import reachable
from supervisor.runtime.controls import read_token, token_path
from supervisor.trading.controls import ACTIONS

TIMEOUT_S = 60.0  # a flatten waits for the desk's lock; the bot answers 202 after its own wait

HELP = {
    "pause": "refuse new entries of the running bot (exits keep working) until resume",
    "resume": "let the running bot enter again after a pause or a flatten",
    "flatten": "cancel the running bot's entries, close its positions, then pause",
    "kill": "trip the running bot's kill switch: no new entries for the rest of the day",
}


def add_control_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the settings file the bot runs with")


def cmd_control(args: argparse.Namespace) -> int:
    action: str = args.command
    assert action in ACTIONS, action
    settings = load(args, overrides=False)
    if settings is None:
        return exitcodes.USAGE
    port = settings.monitoring.http_port
    if not port:
        print(
            f"{action}: monitoring.http_port is 0 in these settings: the bot has no status "
            "endpoint to take controls (set a port and restart it)",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    token = read_token(settings)
    if token is None:
        print(
            f"{action}: no token: monitoring.control_token is unset and "
            f"{token_path(settings)} cannot be read (is the bot running with these settings?)",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    return _post(action, f"{reachable(settings.monitoring.bind)}:{port}", token)


def _post(action: str, where: str, token: str) -> int:
    request = urllib.request.Request(
        f"http://{where}/api/{action}",
        data=b"",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "X-Control-Source": "cli"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            body = json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        said = exc.read().decode(errors="replace").strip()
        print(f"{action}: the bot refused (HTTP {exc.code}): {said}", file=sys.stderr)
        return exitcodes.USAGE
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"{action}: no bot answers on {where} ({reason}): is it running?",
            file=sys.stderr,
        )
        return exitcodes.CANNOT_CONNECT
    print(f"{action}: {body.get('result', body)}")
    return exitcodes.OK
