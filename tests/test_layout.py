"""The house rules, checked on the source: rooms import downwards only, sizes stay small.

commands -> runtime -> trading -> (journal | broker | observe) -> common
workers import only common and workers; supervisor imports nothing from tools
(``--sim`` starts tools/gateway_sim as a child process, by module name, not by import);
only supervisor/broker/ibkr imports the IB client library.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

# Rooms of supervisor/ and their rank: a module may import its own room or a lower rank.
RANKS = {
    "commands": 4,
    "runtime": 3,
    "trading": 2,
    "recording": 2,  # wraps a broker (and reads one back): above broker, below the run
    "backtest": 2,  # a market over history files: a broker's peer, below the commands
    "journal": 1,
    "broker": 1,
    "observe": 1,
}
LEAVES = {"supervisor.exitcodes"}  # constants any room may use
IB_LIBRARIES = {"ib_insync", "ib_async", "eventkit"}
# Measured on ruff-formatted code, which puts every argument of a call that does not fit on
# its own line: STYLE's "modules 300-500 lines at most, functions around 50" in that layout.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules(*folders: str) -> Iterator[tuple[str, Path]]:
    for folder in folders:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            yield ".".join(p for p in parts if p != "__init__"), path


def _imports(path: Path, module: str | None = None) -> Iterator[tuple[str, int]]:
    """Every module an import statement names (lazy ones inside functions too)."""
    module = module or ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")[: -node.level]
                base = ".".join([*package, node.module])
            yield base, node.lineno
            for alias in node.names:  # "from supervisor import exitcodes" names a module
                yield f"{base}.{alias.name}", node.lineno


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "supervisor" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANKS else None


def _project(name: str) -> bool:
    return name.split(".")[0] in {"supervisor", "common", "workers", "tools"}


def _upward(module: str, path: Path) -> list[str]:
    """Imports of ``module`` that reach a room of the same or a higher rank."""
    room = _room(module)
    wrong = []
    for name, line in _imports(path, module):
        target = _room(name)
        if room is None or target is None or name in LEAVES:
            continue
        if target != room and RANKS[target] >= RANKS[room]:
            wrong.append(f"{module}:{line} ({room}) imports {name}")
    return wrong


def test_imports_point_down_only() -> None:
    assert [w for module, path in _modules("supervisor") for w in _upward(module, path)] == []


def test_workers_and_common_import_only_below_themselves() -> None:
    allowed = {"workers": ("workers", "common"), "common": ("common",)}
    wrong = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
        for folder, ok in allowed.items()
        for _module, path in _modules(folder)
        for name, line in _imports(path)
        if _project(name) and name.split(".")[0] not in ok
    ]
    assert wrong == []


def test_supervisor_imports_nothing_from_tools() -> None:
    wrong = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
        for _module, path in _modules("supervisor")
        for name, line in _imports(path)
        if name.split(".")[0] == "tools"
    ]
    assert wrong == []


def test_only_the_ibkr_adapter_imports_the_ib_library() -> None:
    wrong = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
        for module, path in _modules("supervisor", "common", "workers")
        for name, line in _imports(path)
        if name.split(".")[0] in IB_LIBRARIES and not module.startswith("supervisor.broker.ibkr")
    ]
    assert wrong == []


def test_modules_and_functions_stay_small() -> None:
    big: dict[str, str] = {}
    for _module, path in _modules("supervisor", "common", "workers", "tools"):
        name = path.relative_to(REPO_ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines >= MAX_MODULE_LINES:
            big[name] = f"{name}: {lines} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length >= MAX_FUNCTION_LINES:
                    big[f"{name}:{node.name}"] = (
                        f"{name}:{node.lineno} {node.name}(): {length} lines"
                    )
    assert sorted(big.values()) == []


def test_the_import_rule_sees_a_violation(tmp_path: Path) -> None:
    # Given a journal module that reaches up into trading, absolutely and relatively
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from supervisor.trading.risk import evaluate\n"
        "def later():\n    from ..observe import alerts\n"
    )
    # Then both imports are named, and a downward one is not
    assert _upward("supervisor.journal.bad", bad) == [
        "supervisor.journal.bad:1 (journal) imports supervisor.trading.risk",
        "supervisor.journal.bad:1 (journal) imports supervisor.trading.risk.evaluate",
        "supervisor.journal.bad:3 (journal) imports supervisor.observe",
        "supervisor.journal.bad:3 (journal) imports supervisor.observe.alerts",
    ]
    assert _upward("supervisor.commands.bad", bad) == []
