"""systemd's notify protocol (``Type=notify``), for the unit in configs/deploy/: READY=1 once
the bot is connected or waits for a gateway not up yet (STATUS= says which: StatusFeed.say),
WATCHDOG=1 from the event loop, STOPPING=1 at shutdown. A datagram to
``$NOTIFY_SOCKET``; nothing at all when systemd did not start us. Never raises: a watchdog
that cannot be told is logged, and the bot trades on."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("supervisor.observe.systemd")


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # @: the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", path, exc)
        return False


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of systemd's WatchdogSec when it watches this process, else None."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
