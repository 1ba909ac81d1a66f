"""Settings that are valid but leave a trader exposed: said by ``validate`` and at start.

Each is a sentence naming the keys and what follows from them; none stops the bot.
"""

from __future__ import annotations

import ipaddress

from common.config import Settings

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def settings_warnings(settings: Settings) -> list[str]:
    warnings = []
    window_min = settings.risk.exit_before_expiry_min
    interval_s = settings.schedule.interval_s
    if interval_s > window_min * 60:
        warnings.append(
            f"schedule.interval_s ({interval_s:g} s) is longer than "
            f"risk.exit_before_expiry_min ({window_min:g} min): no cycle is sure to start "
            "inside an expiry's exit window, so the expiry guard's own timer is the only "
            "thing that closes expiring positions; keep the bot running through the close"
        )
    if not settings.execution.close_expiring_on_stop:
        warnings.append(
            "execution.close_expiring_on_stop is false: a stop inside an expiry's exit "
            "window leaves the expiring positions held, and they may be exercised"
        )
    host = settings.ibkr.host
    if not loopback(host):
        warnings.append(
            f"ibkr.host {host} is not a loopback address: the TWS API socket is not "
            "encrypted, so orders, positions and account data cross the network in clear "
            "text; run the gateway on this machine, or reach it through an SSH tunnel or VPN"
        )
    return warnings


def loopback(host: str) -> bool:
    """Whether ``host`` is this machine (a name other than localhost's is not known to be)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower().rstrip(".") in LOOPBACK_NAMES
