"""A YAML file read as untrusted input: bounded in size, depth and alias expansion, strict.

A settings or scenario file is typed by a person and may be anything: a binary, a device that
never ends, a 366-byte "billion laughs" that expands to gigabytes, a key written twice (YAML
keeps the last one silently, dropping a whole section). Each of these is refused here with one
line that says where, before any of it reaches validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from common.masking import redacted

MAX_BYTES = 1_000_000  # settings files are a few kB; scenario files a few tens
MAX_DEPTH = 50  # nesting levels
MAX_NODES = 200_000  # scalars and collections after expanding every alias
MERGE_TAG = "tag:yaml.org,2002:merge"


class Sexagesimal(int):
    """A bare ``16:00`` as YAML 1.1 reads it (the base-60 number 960), remembering how it was
    written so an error can say to quote it: a time of day is never meant as a number."""

    text: str

    def __new__(cls, value: int, text: str) -> Sexagesimal:
        number = super().__new__(cls, value)
        number.text = text
        return number

    def hint(self) -> str:
        number, text = int(self), self.text
        return f"YAML reads a bare {text} as the number {number}: write '{text}' in quotes"


class YamlFileError(ValueError):
    """The file cannot be taken as YAML: ``problem`` says where and why, in one line."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def read_yaml_file(path: Path, max_bytes: int = MAX_BYTES) -> Any:
    """The file's one YAML document (None when it is empty); YamlFileError otherwise."""
    try:
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise YamlFileError(f"cannot read the file: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise YamlFileError(f"larger than {max_bytes:,} bytes: not a settings file")
    return parse_yaml(_decoded(data))


def parse_yaml(text: str) -> Any:
    try:
        loader = _StrictLoader(text)  # the reader refuses control characters right here
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise YamlFileError(
            f"line {line}: character #x{exc.character:04x} is not allowed in YAML"
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except YamlFileError:
        raise
    except yaml.YAMLError as exc:
        raise YamlFileError(_yaml_problem(exc)) from None
    except RecursionError:
        raise YamlFileError(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """'line L, column C: not valid YAML (...)', L the line to fix: where the construct
    that went wrong was opened (an unclosed '[' on line 22) when PyYAML names it, not the
    later line where the parser gave up, which is also said."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or exc
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and opened and (not mark or opened.line != mark.line):
        found = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        where = f"line {opened.line + 1}, column {opened.column + 1}: "
        return f"{where}not valid YAML ({context} started here: {problem}{found})"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}not valid YAML ({problem})"


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlFileError(
            f"line {line}, byte {exc.start}: not UTF-8 text (byte 0x{data[exc.start]:02x})"
        ) from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that bounds nesting and refuses a key given twice in one mapping."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlFileError(f"line {mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: Node) -> int:
        number = super().construct_yaml_int(node)
        text = str(node.value).strip()
        return Sexagesimal(number, text) if ":" in text else number

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # '<<': merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise YamlFileError(
                    f"line {line}: key {redacted(str(key))[:40]!r} is given twice (first on line "
                    f"{seen[key]}); YAML would silently keep only the last one"
                )
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _check_expansion(root: Node) -> None:
    """Refuse a document whose aliases expand past MAX_NODES (a 'billion laughs')."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:  # post-order without recursion; an alias is a node already seen
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not children_done:
            if id(node) in open_nodes:
                raise YamlFileError(
                    f"line {node.start_mark.line + 1}: an alias refers to its own anchor"
                )
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        size = 1 + sum(sizes.get(id(child), 1) for child in children)
        if size > MAX_NODES:
            raise YamlFileError(
                f"line {node.start_mark.line + 1}: aliases expand to more than {MAX_NODES:,} values"
            )
        sizes[id(node)] = size


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []
