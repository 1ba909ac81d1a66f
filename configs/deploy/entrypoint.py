#!/usr/bin/env python3
"""The container's entry point and health check (the Dockerfile installs it as
/usr/local/bin/ibkr-bot-entrypoint, beside the installed bot, whose settings loader it uses).

    ibkr-bot-entrypoint run --config /data/settings.yaml ...   runs `ibkr-bot run ...`
    ibkr-bot-entrypoint --healthcheck                           asks /healthz (HEALTHCHECK)

Why a wrapper: compose's `restart: on-failure` restarts on every non-zero exit, and no
restart policy can leave one code out. Exit 2 (bad settings) and 4 (workers that do not come
up or keep dying) need a person, as the systemd unit's RestartPreventExitStatus=2 4 says;
restarted every few seconds they would alert and log forever. So on 2 or 4 this process
stays up, *parked*: it says why once, the health check reports unhealthy (nothing serves
/healthz), and a `docker compose stop` or `restart` (SIGTERM) ends it with the bot's own
code, so `docker compose ps -a` still shows exit 2. Every other code is passed on as it is:
a crash (1), a gateway that never came (3) or a full disk (5) is restarted by the policy.
SIGTERM and SIGINT are passed to the bot, which stops in its documented order.

The bot lives in the gateway container's network namespace (compose: network_mode
service:ib-gateway). When Docker restarts that container (a crash, IBC exiting) it gets a new
namespace and the bot is left in the old one, where nothing but `lo` remains and the gateway
never comes back (docker/compose#6626). So while the bot runs, this process watches the
namespace's interfaces (/proc/net/dev): every one but `lo` gone for ORPHANED_AFTER_S, it
stops the bot and exits 3, which the restart policy restarts, and a restarted container joins
the gateway's current namespace. Not verified against a Docker engine (none runs where this
was written): the tests replay the interface list.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

NEEDS_A_PERSON = {2: "bad command line or settings", 4: "workers not up or dying: halted"}
CONFIG_ENV = "IBKR_BOT_CONFIG"  # the settings file the health check reads the port from
DEFAULT_CONFIG = "/data/settings.yaml"
DATA = os.environ.get("IBKR_BOT_DATA", "/data")  # the volume the bot must be able to write
NET_DEV = os.environ.get("IBKR_BOT_NET_DEV", "/proc/net/dev")  # this namespace's interfaces
# long enough for no blip to count (the namespace never loses its interface while it lives)
ORPHANED_AFTER_S = float(os.environ.get("IBKR_BOT_ORPHANED_AFTER_S", "90"))
GATEWAY_GONE = 3  # as the bot's own "gateway never came": the restart policy restarts it
RECREATE = "docker compose -f configs/deploy/docker-compose.yml up -d --force-recreate bot status"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--healthcheck"]:
        return healthcheck(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
    problem = unwritable(Path(DATA))
    if problem:  # the bot would fail on its journal, less plainly: said here, parked
        return park(2, problem)
    code = run_bot(["ibkr-bot", *argv])
    if code in NEEDS_A_PERSON:
        return park(code, f"the bot exited {code} ({NEEDS_A_PERSON[code]}); the log above says why")
    return code


def unwritable(data: Path) -> str:
    """'' when the bot can write its state folder, else what to do about it."""
    if not data.is_dir() or os.access(data, os.W_OK | os.X_OK):
        return ""  # no volume (a plain `docker run` with another --config): the bot says
    owner = data.stat()
    return (
        f"{data} (owner {owner.st_uid}:{owner.st_gid}) is not writable by this container's "
        f"user {os.getuid()}:{os.getgid()}: on the host, chown the data folder to that user "
        f"(sudo chown -R {os.getuid()}:{os.getgid()} data), or run the container as the "
        f"folder's owner (compose: BOT_UID={owner.st_uid} BOT_GID={owner.st_gid})"
    )


def run_bot(command: list[str]) -> int:
    """The bot as a child, SIGTERM/SIGINT passed on; its exit code (128+n for a signal), or
    GATEWAY_GONE when it was stopped because its network namespace was left behind."""
    bot = subprocess.Popen(command)

    def forward(signum: int, _frame: FrameType | None) -> None:
        bot.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    done, orphaned = threading.Event(), threading.Event()
    watch = (bot, done, orphaned)
    threading.Thread(target=watch_namespace, args=watch, daemon=True).start()
    code = bot.wait()
    done.set()
    if orphaned.is_set():
        return GATEWAY_GONE
    return 128 - code if code < 0 else code


def outside_interfaces(path: str = NET_DEV) -> set[str] | None:
    """This network namespace's interfaces but `lo` (None: unreadable, nothing to judge)."""
    try:
        with open(path, encoding="utf-8") as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    # two header lines, then 'name: counters' per interface
    return {line.split(":", 1)[0].strip() for line in lines if ":" in line} - {"lo"}


def watch_namespace(
    bot: subprocess.Popen[bytes], done: threading.Event, orphaned: threading.Event
) -> None:
    """Stops the bot once every interface but `lo` has been gone for ORPHANED_AFTER_S."""
    if not outside_interfaces():  # no network to lose (network none, no /proc): no watch
        return
    gone_since: float | None = None
    while not done.wait(ORPHANED_AFTER_S / 6):
        if outside_interfaces() != set():
            gone_since = None
            continue
        gone_since = gone_since if gone_since is not None else time.monotonic()
        if time.monotonic() - gone_since >= ORPHANED_AFTER_S:
            print(
                f"ibkr-bot-entrypoint: this network namespace has had no interface but lo "
                f"for {ORPHANED_AFTER_S:.0f} s: the gateway's container was restarted and "
                f"left the bot behind. Stopping it; exit {GATEWAY_GONE} lets the restart "
                f"policy start it in the gateway's new namespace (by hand: {RECREATE})",
                file=sys.stderr,
                flush=True,
            )
            orphaned.set()
            bot.send_signal(signal.SIGTERM)
            return


def park(code: int, why: str) -> int:
    """Up and idle until stopped, so the restart policy does not loop; then ``code``."""
    stopped: list[int] = []  # the handlers first: a stop right after the message counts
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _f: stopped.append(s))
    print(
        f"ibkr-bot-entrypoint: {why}. Not restarted: this needs a person. Fix it, then "
        f"`docker compose restart bot`; until then the container stays up, unhealthy, idle.",
        file=sys.stderr,
        flush=True,
    )
    while not stopped:
        signal.pause()
    return code


def healthcheck(config: str) -> int:
    """0 when /healthz answers 200; 1 otherwise, saying why (docker inspect shows it)."""
    port, problem = status_port(Path(config))
    if problem:
        print(problem)
        return 1
    if port <= 0:
        print(f"monitoring.http_port is not set in {config}: no /healthz to ask")
        return 1
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as answer:
            print(answer.read().decode(errors="replace"))
            return 0
    except urllib.error.HTTPError as exc:  # 503: waiting for the gateway, stale, ...
        print(exc.read().decode(errors="replace"))
    except OSError as exc:
        print(f"no answer on 127.0.0.1:{port}: {exc}")
    if outside_interfaces() == set():
        print(
            f"this network namespace has no interface but lo: the gateway's container was "
            f"restarted and left this one behind; {RECREATE}"
        )
    return 1


def status_port(config: Path) -> tuple[int, str]:
    """(monitoring.http_port, '') as the bot reads it, or (0, why the file cannot be read).

    Read by the bot's own loader (installed in the image): the same YAML rules, ${VAR}
    expansion and validation, so a quoted "9108" or ${STATUS_PORT} is the port the bot serves
    on; a raw YAML read disagreed with the bot and kept a healthy bot unhealthy forever."""
    from common.settings_file import ConfigError, load_settings

    try:
        return load_settings(config).monitoring.http_port, ""
    except ConfigError as exc:  # the bot refuses these settings too (exit 2: parked)
        return 0, f"{config}: " + "; ".join(exc.problems)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
