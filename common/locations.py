"""Where the bot's files are: what ships inside the package, and where its state goes.

The embedded settings and the simulator's scenarios are package data of the ``configs``
package, read through ``importlib.resources``, so an installed copy (``pip install .``, not
editable) finds them in site-packages as a checkout finds them in ``configs/``.

State (journal, logs, metrics) of a settings file's relative paths goes where
``common.settings_file.settings_home`` says; for the embedded default that is
``$SUPERVISOR_HOME``, else ``default_home()``: the project root of a source checkout (the
README's ``var/journal-sim.sqlite``), else a per-user state folder. Installed code is never
written to: site-packages may be read-only, shared by users, or replaced by an upgrade.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # a checkout, or site-packages
HOME_ENV = "SUPERVISOR_HOME"  # where the embedded default keeps its files
STATE_DIR_NAME = "ibkr-bot"  # under $XDG_STATE_HOME (default ~/.local/state)
# a checkout has these beside its packages; a wheel never installs them into site-packages
CHECKOUT_MARKERS = ("pyproject.toml", "setup.cfg")


def _configs_dir() -> Path:
    try:
        found = resources.files("configs")
    except ModuleNotFoundError:
        # an editable install made before configs/ became a package maps only the code
        # packages; the checkout's folder is the same files
        return PROJECT_ROOT / "configs"
    # a wheel installs unzipped, so the package data are plain files with a real path
    return Path(str(found))


CONFIGS_DIR = _configs_dir()
DEFAULT_CONFIG = CONFIGS_DIR / "settings.yaml"
SCENARIOS_DIR = CONFIGS_DIR / "scenarios"
DEFAULT_SCENARIO = SCENARIOS_DIR / "default.yaml"


def scenario(name: str) -> Path:
    """One of the shipped scenarios by its name: ``scenario("soak")``."""
    return SCENARIOS_DIR / f"{name}.yaml"


def scenario_names() -> list[str]:
    """The shipped scenarios' names, sorted: what ``--scenario NAME`` accepts."""
    return sorted(path.stem for path in SCENARIOS_DIR.glob("*.yaml"))


def find_scenario(text: str | None, cwd: Path | None = None) -> tuple[Path | None, list[Path]]:
    """``--scenario``: a file (relative to ``cwd``) or a shipped name (``faults`` or
    ``faults.yaml``); None is the shipped ``default``. Returns the file found (None if none)
    and every place looked at, for the message that says so: an installed copy has no
    ``configs/scenarios/`` in the user's folder, so a name is how its scenarios are reached."""
    if text is None:
        return DEFAULT_SCENARIO, [DEFAULT_SCENARIO]
    given = Path(text).expanduser()
    if not given.is_absolute():
        given = (cwd or Path.cwd()) / given
    looked = [given]
    if given.is_file():
        return given.resolve(), looked
    if "/" not in text and "\\" not in text:  # a bare name: one of the shipped scenarios
        shipped = scenario(text.removesuffix(".yaml"))
        looked.append(shipped)
        if shipped.is_file():
            return shipped, looked
    return None, looked


def is_checkout(root: Path = PROJECT_ROOT) -> bool:
    """True when the code runs from a source checkout (or an editable install of one)."""
    return all((root / marker).is_file() for marker in CHECKOUT_MARKERS)


def user_state_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/ibkr-bot``, else ``~/.local/state/ibkr-bot`` (the XDG base
    directory rule: a relative $XDG_STATE_HOME is ignored)."""
    base = environ.get("XDG_STATE_HOME", "")
    if not Path(base).is_absolute():
        home = environ.get("HOME") or str(Path.home())
        base = str(Path(home) / ".local" / "state")
    return Path(base) / STATE_DIR_NAME


def default_home(environ: Mapping[str, str], root: Path = PROJECT_ROOT) -> Path:
    """Where the embedded default keeps its state when $SUPERVISOR_HOME is not set."""
    return root if is_checkout(root) else user_state_dir(environ)
