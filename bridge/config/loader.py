"""Reading a config file: size and encoding checks, YAML, validation, located errors.

`load_config` reports every problem at once, each with its dotted key path and line,
e.g. ``mqtt.tls.ca_file (line 17): file /etc/ca.pem does not exist``. Duplicate keys
are errors (PyYAML would keep the last), alias expansion has a node budget, and a
recursive alias or nesting deeper than `_MAX_YAML_DEPTH` is a located problem too.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from bridge.config.models import Settings
from bridge.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
# Walking the YAML node tree expands aliases; a budget stops alias bombs and cycles.
_MAX_YAML_NODES = 100_000
# Far beyond any real config; keeps the walk (and PyYAML's recursive composer, which
# would raise RecursionError) within Python's stack.
_MAX_YAML_DEPTH = 64

LineMap = dict[tuple[str, ...], int]


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Read, parse and validate a config file. Raises ConfigError listing every problem."""
    source = str(path)
    try:
        with open(path, "rb") as config_file:
            raw = config_file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"file is larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"file is not UTF-8 (byte {exc.start})"]) from None
    data, lines, problems = _parse_yaml(source, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append("(top level) (line 1): must be a mapping of keys, as in the example")
        raise ConfigError(source, problems)
    context = {"base_dir": Path(source).absolute().parent}
    try:
        settings = Settings.model_validate(data, context=context)
    except ValidationError as exc:
        problems.extend(_describe_errors(exc, lines))
        raise ConfigError(source, problems) from None
    if problems:
        raise ConfigError(source, problems)
    return settings


def _parse_yaml(source: str, text: str) -> tuple[object, LineMap, list[str]]:
    try:
        # The reader refuses control characters (NUL, \x01, ...) when it is built.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise ConfigError(source, [_reader_problem(text, exc)]) from None
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            reached = loader.get_mark()
            raise ConfigError(
                source,
                [f"line {reached.line + 1}, column {reached.column + 1}: {_too_deep()}"],
            ) from None
        if node is None:
            return None, {}, []
        # The document itself: where a missing top-level key is reported.
        lines: LineMap = {(): node.start_mark.line + 1}
        problems: list[str] = []
        _index_lines(node, (), lines, problems, [_MAX_YAML_NODES], frozenset())
        if problems:
            raise ConfigError(source, problems)
        return loader.construct_document(node), lines, problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(source, [f"{where}YAML syntax error: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"YAML error: {exc}"]) from None
    finally:
        loader.dispose()


def _too_deep() -> str:
    return f"nested more than {_MAX_YAML_DEPTH} levels deep"


def _reader_problem(text: str, exc: yaml.reader.ReaderError) -> str:
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    character = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return (
        f"line {line}, column {column}: control character U+{character:04X} is not allowed "
        "in YAML; remove it"
    )


def _index_lines(
    node: yaml.Node,
    path: tuple[str, ...],
    lines: LineMap,
    problems: list[str],
    budget: list[int],
    ancestors: frozenset[int],
) -> None:
    """Record the line of every key path; report duplicate keys (PyYAML keeps the last),
    recursive aliases and nesting too deep to walk."""
    budget[0] -= 1
    if budget[0] < 0:
        if budget[0] == -1:
            problems.append(f"document has more than {_MAX_YAML_NODES} nodes (aliases expanded)")
        return
    where = f"{'.'.join(path) or '(top level)'} (line {lines.get(path, node.start_mark.line + 1)})"
    if id(node) in ancestors:
        problems.append(f"{where}: recursive alias (the value contains itself)")
        return
    if len(path) > _MAX_YAML_DEPTH:
        problems.append(f"{where}: {_too_deep()}")
        return
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        ancestors = ancestors | {id(node)}
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in first_seen and key != "<<":
                dotted = ".".join((*path, key))
                problems.append(
                    f"{dotted} (line {line}): duplicate key (first at line {first_seen[key]})"
                )
            first_seen.setdefault(key, line)
            lines.setdefault((*path, key), line)
            _index_lines(value_node, (*path, key), lines, problems, budget, ancestors)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault((*path, str(index)), item.start_mark.line + 1)
            _index_lines(item, (*path, str(index)), lines, problems, budget, ancestors)


def _describe_errors(exc: ValidationError, lines: LineMap) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"] if part != "[key]")
        dotted = ".".join(loc) or "(top level)"
        line = _line_of(loc, lines)
        where = f" (line {line})" if line is not None else ""
        problems.append(f"{dotted}{where}: {_error_message(error, loc)}")
    return problems


def _line_of(loc: tuple[str, ...], lines: LineMap) -> int | None:
    # A missing key has no line of its own: point at the section that lacks it.
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _error_message(error: Any, loc: tuple[str, ...]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f" (known keys: {', '.join(allowed)})" if allowed else ""
        return f"unknown key{hint}"
    message = str(error["msg"])
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        message += f" (got {value!r})"
    return message


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    model: Any = Settings
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        field = model.model_fields.get(part) if is_model else None
        if field is None:
            return []
        model = field.annotation
        if get_origin(model) in (Union, UnionType):
            # An optional section: the model among the alternatives.
            model = next(arg for arg in get_args(model) if arg is not type(None))
        if get_origin(model) is dict:
            if not parts:
                return []  # free-form keys (server aliases)
            parts.pop(0)
            model = get_args(model)[1]
        elif get_origin(model) is tuple:
            if not parts:
                return []
            parts.pop(0)  # the entry's index
            model = get_args(model)[0]
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []
