"""``init DIR``: a first settings file for a paper account, and what to run next.

DIR/settings.yaml is written short and commented: the keys a first account needs (the paper
port, dry run, the account left for the user to fill); every other key keeps the embedded
default (``validate`` lists them, docs/configuration.md explains them). The file's relative
paths put the bot's state under DIR/var. An existing file is never overwritten (exit 2): it
may hold the only copy of someone's settings.

DIR also gets a ``.gitignore`` of ``*`` (unless it has one): the settings name the account
and var/ holds the journal, and DIR is wherever the user chose (inside this checkout under
any name, or inside their own repository), so no ignore list of ours could name it; one in
DIR itself keeps it out of whatever repository it lands in.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from supervisor import exitcodes

SETTINGS_NAME = "settings.yaml"
GITIGNORE = """\
# written by `init`: the settings (the account id) and var/ (the journal) stay out of git;
# delete this file to commit them
*
"""

TEMPLATE = """\
# IBKR options bot settings, written by `init`. Check with: {prog} validate --config {path}
# Only what a first paper account needs is here; every other key keeps the embedded default
# (docs/configuration.md lists them all). Relative paths (journal, logs) are anchored at this
# file's folder: the bot's state goes to var/ beside it, wherever the command is started.

broker: ibkr               # the market: ibkr (the gateway below) | sim (the simulated gateway)
                           #   | stub (in memory); --broker / --sim override it

ibkr:                      # env overrides: IBKR_HOST, IBKR_PORT, IBKR_CLIENT_ID, IBKR_ACCOUNT
  host: 127.0.0.1          # IB Gateway or TWS on this machine
  port: 4002               # paper IB Gateway (live gateway 4001, TWS 7497 paper / 7496 live)
  client_id: 1             # another API client already using it: "client id in use" (326)
  account: ""              # FILL IN your paper account id (DU...; the gateway's login shows
                           #   it, or `doctor` lists the managed accounts). Dry run and
                           #   what-if work without it; live refuses to trade unless the
                           #   connected account equals this
  market_data_type: live   # live needs the subscriptions (US equities, OPRA options; a paper
                           #   account shares them only with market data sharing on);
                           #   without them: delayed

universe:
  symbols: [SPY]           # the underlyings to trade options on

execution:
  mode: dry_run            # dry_run (decide and journal, send nothing) | whatif (IBKR checks
                           #   each order, none is placed) | live (also needs --live and the
                           #   account above)
  journal_path: var/journal-{{broker}}.sqlite   # one journal per market (stub | sim | ibkr)

logging:
  level: INFO
  json_path: var/bot.jsonl
"""


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help=f"folder for {SETTINGS_NAME} (created)")


def settings_text(path: Path, prog: str) -> str:
    """The file ``init`` writes at ``path``."""
    return TEMPLATE.format(prog=prog, path=shlex.quote(str(path)))


def next_commands(path: Path, prog: str) -> list[str]:
    """What to run after ``init``: the gateway checked, a dry run, the phases on paper (a
    ten-minute soak: phases needs a length, and its files go to var/phases beside ``path``)."""
    config = shlex.quote(str(path))
    return [
        f"{prog} doctor --config {config}",
        f"{prog} run --config {config} --sim --cycles 2",
        f"{prog} phases --config {config} --broker ibkr --soak-s 600",
    ]


def cmd_init(args: argparse.Namespace, prog: str = "python -m supervisor") -> int:
    folder = Path(args.dir)
    path = folder / SETTINGS_NAME
    if folder.exists() and not folder.is_dir():
        print(f"{folder} is a file, not a folder: init another folder", file=sys.stderr)
        return exitcodes.USAGE
    if path.exists() or path.is_symlink():
        print(
            f"{path} already exists: not overwritten (edit it, or init another folder)",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # "x": the existence check above and the write cannot race into an overwrite
        with open(path, "x", encoding="utf-8") as out:
            out.write(settings_text(path, prog))
    except FileExistsError:
        print(f"{path} already exists: not overwritten", file=sys.stderr)
        return exitcodes.USAGE
    except OSError as exc:
        print(f"cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return exitcodes.USAGE
    _ignore(folder)
    print(f"wrote {path}: a paper account (port 4002), dry run; fill in ibkr.account")
    print("next:")
    for number, command in enumerate(next_commands(path, prog), start=1):
        print(f"  {number}. {command}")
    return exitcodes.OK


def _ignore(folder: Path) -> None:
    """DIR/.gitignore, unless DIR has one (the user's own is theirs)."""
    try:
        with open(folder / ".gitignore", "x", encoding="utf-8") as out:
            out.write(GITIGNORE)
    except FileExistsError:
        pass
    except OSError as exc:  # the settings are written: say it, don't fail for it
        print(f"note: cannot write {folder / '.gitignore'}: {exc.strerror or exc}", file=sys.stderr)
