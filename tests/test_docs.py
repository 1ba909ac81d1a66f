"""The README and docs/ as a newcomer meets them: short, linked, complete, inside the repo.

Every relative link must resolve to a file of the repository (and a heading, when it names
one); the README stays a map (at most 250 lines, its two commands in the first 40); the module
map names every module and the configuration page every settings key, so neither goes stale
silently when code is added; and every command in a shell block parses with its own parser.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from pydantic import BaseModel

from common.config import Settings
from supervisor.commands.cli import build_parser
from tools.gateway_sim.__main__ import parse_args as gateway_sim_args

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
CODE_DIRS = ("common", "workers", "supervisor", "tools")

# the README's two commands, exactly as a newcomer copies them
RUN_SIM = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && "
    ".venv/bin/python -m supervisor run --sim --cycles 3"
)
RUN_TESTS = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
)

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PARENT_PATH = re.compile(r"(?:\.\./)+[\w./-]*")


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("//")


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation gone, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^#{1,6} (.+)$", line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _inside_repo(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def _broken(page: Path, text: str | None = None) -> list[str]:
    """What is wrong with the page's relative links (``text``: the page's text, else read)."""
    text = page.read_text(encoding="utf-8") if text is None else text
    problems = []
    for target in filter(_relative, (m.group(1) for m in LINK.finditer(text))):
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not _inside_repo(path):
            problems.append(f"{page.name}: {target}: outside the repository")
        elif not path.exists():
            problems.append(f"{page.name}: {target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            problems.append(f"{page.name}: {target}: no heading #{anchor}")
    return problems


def test_every_relative_link_resolves_to_a_file_and_heading_of_the_repository() -> None:
    assert DOCS, "docs/ holds the manual"
    problems = [problem for page in PAGES for problem in _broken(page)]
    assert problems == []


def test_the_link_check_sees_a_missing_file_a_missing_heading_and_a_way_out() -> None:
    page = ROOT / "docs" / "architecture.md"

    def check(link: str) -> str:
        return " ".join(_broken(page, link))

    assert "outside the repository" in check("[x](../../elsewhere.md)")
    assert "no such file" in check("[x](_missing_/x.md)")
    assert "no heading" in check("[x](operations.md#no-such-heading)")
    assert check("[x](operations.md#exit-codes) [y](../README.md) [z](https://example.com)") == ""


def test_no_path_points_outside_the_repository() -> None:
    outside = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in PARENT_PATH.finditer(text):
            if not _inside_repo(page.parent / match.group(0)):
                outside.append(f"{page.name}: {match.group(0)}")
        if ".library" in text:
            outside.append(f"{page.name}: .library")
    assert outside == []


def test_the_readme_is_a_map_with_its_two_commands_first() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    first = "\n".join(lines[:40])
    assert RUN_SIM in first
    assert RUN_TESTS in first


def _map_sections() -> dict[str, str]:
    """The module map's text under each folder heading (``### common/``, ``#### …``)."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    text = text[text.index("## The module map") :]
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        heading = re.match(r"^#{3,4} ([\w/]+/)$", line)
        if heading:
            current = heading.group(1)
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def test_the_module_map_names_every_module() -> None:
    sections = _map_sections()
    missing = []
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            module = path.relative_to(ROOT).as_posix()
            owners = [s for s in sections if module.startswith(s)]
            if not owners or f"`{path.name}`" not in sections[max(owners, key=len)]:
                missing.append(module)
    assert missing == []


def _keys(model: BaseModel, prefix: str = "") -> list[str]:
    keys = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            keys += _keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_the_configuration_page_lists_every_settings_key() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    keys = _keys(Settings())
    assert "execution.mode" in keys
    assert [key for key in keys if f"`{key}`" not in text] == []


def _commands() -> list[tuple[str, list[str]]]:
    """Every bot or simulator command line in a fenced shell block: (page, its arguments)."""
    found = []
    for page in PAGES:
        blocks = re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
        for line in "\n".join(blocks).splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                words = shlex.split(part)
                for i, word in enumerate(words):
                    if word.endswith("ibkr-bot") or words[i - 1 : i + 1] == ["-m", "supervisor"]:
                        found.append((page.name, ["bot", *words[i + 1 :]]))
                    elif words[i - 1 : i + 1] == ["-m", "tools.gateway_sim"]:
                        found.append((page.name, ["sim", *words[i + 1 :]]))
    return found


def test_every_command_in_the_docs_parses_with_the_bot_s_own_command_line() -> None:
    commands = _commands()
    assert ("README.md", ["bot", "run", "--sim", "--cycles", "3"]) in commands
    refused = []
    for page, (kind, *argv) in commands:
        try:
            if kind == "bot":
                build_parser().parse_args(argv)
            else:
                gateway_sim_args(argv)
        except SystemExit:
            refused.append(f"{page}: {' '.join(argv)}")
    assert refused == []


REPO_PATH = re.compile(r"`((?:common|workers|supervisor|tools|tests|configs|\.ci)/[\w./*-]*)")
SUPERVISOR_BASES = ("supervisor", "supervisor/broker")
SHORT_PATH = re.compile(r"`((?:commands|runtime|trading|journal|broker|observe|ibkr)/[\w.]+\.py)`")


def test_every_file_the_docs_name_exists() -> None:
    # a stale name (a test file that was renamed, a module that moved) is caught here
    missing = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for name in REPO_PATH.findall(text):
            if not list(ROOT.glob(name.rstrip("/"))):
                missing.append(f"{page.name}: {name}")
        for name in SHORT_PATH.findall(text):
            if not any((ROOT / base / name).exists() for base in SUPERVISOR_BASES):
                missing.append(f"{page.name}: {name}")
    assert missing == []
    assert REPO_PATH.findall("`tests/test_supervisor.py`") == ["tests/test_supervisor.py"]
    assert not (ROOT / "tests" / "test_supervisor.py").exists()
