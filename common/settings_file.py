"""The settings file read and validated: untrusted text in, frozen Settings out, or a
ConfigError whose lines each name the key (or the line) that is wrong.

Environment variables override the connection (IBKR_HOST, IBKR_PORT, IBKR_CLIENT_ID,
IBKR_ACCOUNT). Relative file paths (journal, metrics, logs) are anchored where the settings
live, never at the working directory, so cron or systemd starting elsewhere finds the same
journal: a settings file's own directory, or for the embedded default $SUPERVISOR_HOME, else
the project root of a source checkout, else a per-user state folder (common.locations): never
the installed code.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from common.config import Settings
from common.locations import DEFAULT_CONFIG, HOME_ENV, default_home
from common.masking import redacted, scrubbed, secret_name, secret_strings
from common.yaml_file import Sexagesimal, YamlFileError, read_yaml_file

SHOWN_CHARS = 80  # an error shows at most this much of the bad value


class ConfigError(Exception):
    """A user mistake in the settings: ``problems`` are lines of 'key.path: value: reason'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


ENV_OVERRIDES = {
    "IBKR_HOST": ("host", str),
    "IBKR_PORT": ("port", int),
    "IBKR_CLIENT_ID": ("client_id", int),
    "IBKR_ACCOUNT": ("account", str),
}


def _env_overrides(
    raw: dict[str, Any], environ: dict[str, str], problems: list[str]
) -> dict[str, Any]:
    """``raw`` with the connection's variables applied; a bad one is added to ``problems``
    (and left out) so it is reported with every other mistake."""
    section = raw.get("ibkr") or {}
    if not isinstance(section, dict):
        return raw  # not a mapping: validation names the problem
    ibkr = dict(section)
    for var, (key, kind) in ENV_OVERRIDES.items():
        if environ.get(var):  # empty is unset: compose passes ${IBKR_ACCOUNT:-} as ""
            try:
                ibkr[key] = kind(environ[var])
            except ValueError:
                shown = _shown(redacted(environ[var]))
                problems.append(f"env {var}: {shown}: not a valid {kind.__name__}")
    return {**raw, "ibkr": ibkr} if ibkr else raw


def _format_errors(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        names = [str(p) for p in err["loc"]]
        # a key that names a secret, or a value that looks like one, is never echoed
        secret = bool(names) and secret_name(names[-1])
        path = ".".join(redacted(name) for name in names) or "(top level)"
        value = err.get("input")
        shown = _shown(redacted(value, secret))
        # a validator may quote the value
        reason = _capped(scrubbed(err["msg"], secret_strings(value, secret)), 3 * SHOWN_CHARS)
        if err["type"] == "extra_forbidden":
            reason = "unknown key" + _did_you_mean(names)
        elif isinstance(value, Sexagesimal):
            reason = f"{reason}; {value.hint()}"
        lines.append(f"{path}: {shown}: {reason}")
    return lines


def _did_you_mean(names: list[str]) -> str:
    """'; did you mean 'symbols'?' when the unknown key is close to a real one beside it."""
    model: type[BaseModel] = Settings
    for name in names[:-1]:
        field = model.model_fields.get(name)
        kind = field.annotation if field else None
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            return ""  # inside a list or a mapping: no fixed set of keys to compare with
        model = kind
    close = difflib.get_close_matches(names[-1], list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, (list, tuple)) and len(value) > SHOWN_CHARS:
        return f"[{len(value)} items]"  # repr of a huge list is itself the hazard
    return _capped(repr(value), SHOWN_CHARS)


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_settings(
    raw: Any,
    source: str = "<settings>",
    environ: dict[str, str] | None = None,
    origins: dict[str, str] | None = None,
) -> Settings:
    """``raw`` validated, the environment's overrides applied; ``origins`` names the keys
    whose values ``${VAR}`` supplied (see ``Settings.origins``)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"(top level): {type(raw).__name__}: expected a mapping"])
    env = dict(os.environ) if environ is None else environ
    problems: list[str] = []
    overridden = _env_overrides(raw, env, problems)
    try:
        settings = Settings.model_validate(overridden)
    except ValidationError as exc:
        problems += _format_errors(exc)
    if problems:
        raise ConfigError(source, problems)
    found = {key: var for key, var in (origins or {}).items() if key in ORIGIN_KEYS}
    named = _file_account(raw)
    if env.get("IBKR_ACCOUNT") and env["IBKR_ACCOUNT"] != named:
        if settings.execution.mode == "live" and named:
            raise ConfigError(source, [_account_conflict(named, env["IBKR_ACCOUNT"], found)])
        found["ibkr.account"] = "$IBKR_ACCOUNT"
    return settings.with_origins(found)


ORIGIN_KEYS = ("execution.mode", "ibkr.account")  # whose source the start line names


def _file_account(raw: dict[str, Any]) -> str:
    section = raw.get("ibkr")
    account = section.get("account") if isinstance(section, dict) else None
    return str(account) if account else ""


def _account_conflict(named: str, env: str, found: dict[str, str]) -> str:
    # Live is three keys that must agree; a variable quietly replacing the account the file
    # names would make the environment a fourth key nobody sees.
    where = (
        f"the settings file (via {found['ibkr.account']})"
        if "ibkr.account" in found
        else "the settings file"
    )
    return (
        f"ibkr.account: {where} names {named!r} but IBKR_ACCOUNT={env!r} in the "
        f"environment names another, and execution.mode is live: refused; unset "
        f"IBKR_ACCOUNT (or set it to {named!r}), or to trade {env!r} name it in the file"
    )


def reparsed(
    settings: Settings,
    raw: dict[str, Any],
    changed: dict[str, str] | None = None,
    source: str = "command line",
) -> Settings:
    """``raw`` (a dump of ``settings``, some values changed) validated again; where the keys
    came from is kept, with ``changed`` on top (e.g. {"execution.mode": "--mode whatif"})."""
    fresh = parse_settings(raw, source, environ={})
    return fresh.with_origins({**settings.origins(), **(changed or {})})


def origins_text(settings: Settings) -> str:
    """'execution.mode live from $BOT_MODE, ibkr.account DU1 from $IBKR_ACCOUNT', or ''."""
    values = {"execution.mode": settings.execution.mode, "ibkr.account": settings.ibkr.account}
    return ", ".join(
        f"{key} {values[key] or repr('')} from {origin}"
        for key, origin in sorted(settings.origins().items())
        if key in values
    )


# ${NAME}, ${NAME:-default}, $$ (a literal $); anything else after a $ that looks like a shell
# form (${NAME:?msg}, ${NAME-x}, a bare $NAME, an unclosed ${) is refused, never taken
# literally: `host: ${H:-localhost}` kept as text was a host nobody meant
ENV_TOKEN = re.compile(r"\$\$|\$\{(?P<inner>[^}]*)\}|\$\{|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")
ENV_REFERENCE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
SUPPORTED = "supported: ${NAME}, ${NAME:-default} (unset or empty: the default), $$ for a literal $"


_UNRESOLVED = object()  # a value whose ${NAME} could not be filled in: left out, reported


def expand_env(
    raw: Any,
    environ: dict[str, str],
    source: str,
    where: str = "",
    found: dict[str, str] | None = None,
    problems: list[str] | None = None,
) -> Any:
    """``${NAME}`` in any string value replaced by the environment's NAME, so secrets (alert
    URLs, tokens) live in the environment, not the file; an unset or empty NAME is an error
    naming the variable and the key (empty is never a value: ``https://hooks.slack.com/${P}``
    with P="" would be a wrong webhook that looks right). ``${NAME:-default}`` takes the
    default when NAME is unset or empty (an empty default is refused: it is the same trap);
    ``$$`` is a literal ``$``; other shell forms are errors (see ``ENV_TOKEN``). Given
    ``problems``, each such error is added there and its key left out, so validation still
    reports the rest; else the first one raises. The values never reach a log: the secret
    fields are SecretStr. ``found`` collects which variables each key's value came from
    ({"execution.mode": "$BOT_MODE"})."""
    collected: list[str] = [] if problems is None else problems
    expanded = _expanded(raw, environ, where, found, collected)
    if problems is None and collected:
        raise ConfigError(source, collected[:1])
    return {} if expanded is _UNRESOLVED else expanded


def _expanded(
    raw: Any, environ: dict[str, str], where: str, found: dict[str, str] | None, problems: list[str]
) -> Any:
    if isinstance(raw, dict):
        pairs = (
            (k, _expanded(v, environ, f"{where}.{k}" if where else str(k), found, problems))
            for k, v in raw.items()
        )
        return {k: v for k, v in pairs if v is not _UNRESOLVED}
    if isinstance(raw, list):
        items = (_expanded(v, environ, f"{where}.{i}", found, problems) for i, v in enumerate(raw))
        return [v for v in items if v is not _UNRESOLVED]
    if not isinstance(raw, str) or "$" not in raw:
        return raw
    wrong: list[str] = []
    used: list[str] = []
    text = ENV_TOKEN.sub(lambda m: _filled(m, environ, where, wrong, used), raw)
    problems += [f"{where}: {problem}" for problem in dict.fromkeys(wrong)]
    if wrong:
        return _UNRESOLVED
    if found is not None and used:
        found[where] = ", ".join(f"${name}" for name in dict.fromkeys(used))
    return text


def _filled(
    token: re.Match[str], environ: dict[str, str], where: str, wrong: list[str], used: list[str]
) -> str:
    """What one ``$`` token stands for; a mistake is appended to ``wrong`` instead."""
    inner, bare = token.group("inner"), token.group("bare")
    secret = secret_name(where.rsplit(".", 1)[-1])
    if token.group(0) == "$$":
        return "$"
    if bare is not None:
        # the text after a $ may be part of a secret (a password): shown for no secret's key
        shown = "a bare $NAME" if secret else f"${bare}"
        wrong.append(f"{shown} is not expanded: write ${{NAME}} ({SUPPORTED})")
        return ""
    ref = ENV_REFERENCE.fullmatch(inner) if inner is not None else None
    if ref is None or "$" in (ref.group("default") or ""):
        form = "'${' without a closing '}'" if inner is None else f"${{{inner}}}"
        form = "this ${...}" if secret and inner is not None else form
        wrong.append(f"{form}: not a supported form ({SUPPORTED})")
        return ""
    name, default = ref.group("name"), ref.group("default")
    if default == "":  # refused even when set: the trap would wait for the day it is not
        wrong.append(f"${{{name}:-}}: an empty default is no value: give one, or write ${{{name}}}")
    elif environ.get(name):
        used.append(name)
        return environ[name]
    elif default is not None:
        return default
    else:
        state = "is not set" if name not in environ else "is empty"
        wrong.append(f"${{{name}}} {state} in the environment")
    return ""


def settings_home(path: Path, environ: dict[str, str] | None = None) -> Path:
    """Where relative paths in the settings at ``path`` point from: its own folder, or for
    the embedded default $SUPERVISOR_HOME, else ``default_home`` (the checkout, or a
    per-user state folder when installed)."""
    if path.resolve() == DEFAULT_CONFIG.resolve():
        env = dict(os.environ) if environ is None else environ
        return Path(env.get(HOME_ENV) or default_home(env)).resolve()
    return path.resolve().parent


def anchored(settings: Settings, home: Path) -> Settings:
    """The settings with every relative file path made absolute under ``home``."""

    def at(value: str) -> str:
        return value if not value or Path(value).is_absolute() else str(home / value)

    monitoring = settings.monitoring
    return settings.model_copy(
        update={
            "execution": settings.execution.model_copy(
                update={"journal_path": at(settings.execution.journal_path)}
            ),
            "monitoring": monitoring.model_copy(
                update={
                    "metrics_path": at(monitoring.metrics_path),
                    "gateway_log_path": at(monitoring.gateway_log_path),
                }
            ),
            "logging": settings.logging.model_copy(
                update={"json_path": at(settings.logging.json_path)}
            ),
            "recording": settings.recording.model_copy(update={"dir": at(settings.recording.dir)}),
        }
    )


def journal_for(settings: Settings, broker: str) -> Settings:
    """The settings with the journal path filled in for this broker (stub | sim | ibkr)."""
    path = settings.execution.journal_path.format(broker=broker)
    return settings.model_copy(
        update={"execution": settings.execution.model_copy(update={"journal_path": path})}
    )


def load_settings(
    path: str | Path | None = None,
    environ: dict[str, str] | None = None,
    notes: list[str] | None = None,
) -> Settings:
    """Read and validate a settings file (the embedded default when ``path`` is None), its
    relative paths anchored (see ``settings_home``); what the user should know but is not
    wrong (an empty file) is appended to ``notes``."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = read_yaml_file(path)
    except YamlFileError as exc:
        raise ConfigError(str(path), [exc.problem]) from None
    if raw is None and notes is not None:
        notes.append(f"{path} is empty: every setting takes its default")
    found: dict[str, str] = {}
    problems: list[str] = []  # every mistake at once: an unset variable hides none of the rest
    env = dict(os.environ) if environ is None else environ
    raw = expand_env(raw, env, str(path), "", found, problems)
    try:
        settings = parse_settings(raw, str(path), environ, found)
    except ConfigError as exc:
        raise ConfigError(str(path), problems + exc.problems) from None
    if problems:
        raise ConfigError(str(path), problems)
    return anchored(settings, settings_home(path, environ))
