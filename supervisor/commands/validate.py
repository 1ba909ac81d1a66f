"""``validate``: read and check a settings file, print OK or every problem (exit 2)."""

from __future__ import annotations

import argparse

from common.settings_file import origins_text
from common.settings_warnings import settings_warnings
from supervisor import exitcodes
from supervisor.commands.options import load


def cmd_validate(args: argparse.Namespace) -> int:
    settings = load(args, overrides=False)
    if settings is None:
        return exitcodes.USAGE
    print(
        f"OK: {args.config or 'embedded configs/settings.yaml'} "
        f"({len(settings.universe.symbols)} symbols, mode {settings.execution.mode})"
    )
    keys = origins_text(settings)
    if keys:  # the environment is part of what runs: say what it supplies
        print(f"note: {keys}")
    for text in settings_warnings(settings):
        print(f"warning: {text}")
    return exitcodes.OK
