"""Read a rules file: YAML → pydantic → compiled :class:`~pbxbridge.core.rules.Rules`.

A rules file is accepted whole or rejected whole. Every problem found is
reported, each as ``FILE:LINE: key.path: message``, so an operator fixes them
all in one go. pydantic reports key paths, not lines; we map each path onto
the YAML node tree (``yaml.compose``) to find the line.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ValidationError

from pbxbridge.config.ical import Closure, IcsError, closures
from pbxbridge.config.schema import (
    CalendarConfig,
    QueueConfig,
    RejectConfig,
    RulesFile,
    Service115Config,
    StateConfig,
    TenantConfig,
    UnknownDidConfig,
)
from pbxbridge.core.rules import Rules

MAX_FILE_BYTES = 32 * 1024 * 1024
"""Larger files are refused before parsing (the 50,000-DID benchmark is ~2 MB)."""
MAX_EXPANDED_NODES = 2_000_000
"""Refuse YAML whose aliases expand beyond this (a "billion laughs" file)."""
ICS_YEARS_BACK = 2
ICS_YEARS_AHEAD = 5
"""An ``ics:`` file's events are expanded from 1 January two years back to 31
December five years ahead of the year the rules are loaded in (replays of the
journal look back, callback deadlines and ``explain`` look ahead)."""

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a rules file.

    Attributes:
        file: The file name as given.
        line: 1-based line number (0 when unknown).
        path: Key path (``tenants.wardenburg.dids.0``), ``""`` for the document.
        message: What is wrong, and how to fix it where we can tell.
    """

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class ConfigError(Exception):
    """A rules file was rejected; ``issues`` lists every problem."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = tuple(sorted(issues, key=lambda i: (i.line, i.path)))
        super().__init__("\n".join(str(i) for i in self.issues))


class _Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """Safe loader that keeps unquoted dates as strings.

    An operator writes ``closed: [2026-12-24]`` and means the string; PyYAML
    would construct a ``datetime.date``. Everything else keeps YAML 1.1
    semantics on purpose, so ``17:30`` still becomes 1050 and the schema can
    reject it with a message that shows the original text.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_rules(path: str | Path) -> tuple[Rules, RulesFile]:
    """Load, validate and compile a rules file.

    Args:
        path: The YAML file.

    Returns:
        The compiled rules and the validated file model.

    Raises:
        ConfigError: With every problem found; nothing is half-loaded.
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([Issue(name, 0, "", f"cannot read: {exc.strerror or exc}")]) from None
    return parse_rules(raw, name, base_dir=Path(path).resolve().parent)


def parse_rules(
    raw: bytes | str,
    name: str = "<rules>",
    *,
    base_dir: Path | None = None,
    today: date | None = None,
) -> tuple[Rules, RulesFile]:
    """Validate and compile rules from YAML text.

    Args:
        raw: The YAML document.
        name: File name used in messages and as the rules' source.
        base_dir: Folder that ``ics:`` paths are relative to (default: the
            current directory).
        today: The load date, which sets the window ``ics:`` files are expanded
            in (default: the machine's local date).

    Returns:
        The compiled rules and the validated file model.

    Raises:
        ConfigError: With every problem found.
    """
    from pbxbridge.config.compile import compile_rules  # avoid an import cycle

    data, root, issues = _parse_yaml(raw, name)
    present: dict[str, frozenset[str]] = {}
    try:
        model = RulesFile.model_validate(data)
    except ValidationError as exc:
        issues.extend(_pydantic_issues(exc, root, name))
        # Keep going with the entries that are valid on their own, so that one
        # run reports wrong references and numbers too, not just the shapes.
        model, present = _valid_part(data)
    text = raw if isinstance(raw, bytes) else raw.encode("utf-8")
    digest = hashlib.sha256(text)
    ics = _read_ics(model, root, name, base_dir or Path(), today or date.today(), digest, issues)
    rules, problems = compile_rules(
        model, source=name, digest=digest.hexdigest(), present=present, ics=ics
    )
    for loc, message in problems:
        issues.append(Issue(name, _line_for(root, loc), _dotted(loc), message))
    if issues:
        raise ConfigError(issues)
    assert rules is not None
    return rules, model


def line_finder(raw: bytes | str) -> Callable[[Path_], int]:
    """Map key paths of a (valid) rules file to their lines, for warnings.

    Args:
        raw: The YAML text.

    Returns:
        A function from a key path (``("calendars", "main", "closed", 0)``)
        to its 1-based line, as errors report it.
    """
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    return lambda loc: _line_for(root, loc)


def named_ics_files(path: str | Path) -> list[Path]:
    """The ``.ics`` files a rules file names, read leniently, for watching them.

    It needs no valid file: a reload that fails because a newly named ``.ics``
    is broken must still watch that ``.ics``, so that fixing it reloads the rules.

    Args:
        path: The rules file.

    Returns:
        The named files, resolved against the rules file's folder; ``[]`` when
        the file cannot be read as YAML at all.
    """
    base = Path(path).resolve().parent
    try:
        data = yaml.load(Path(path).read_bytes(), Loader=_Loader)  # noqa: S506 (a safe loader)
    except (OSError, yaml.YAMLError, ValueError, RecursionError):
        return []
    calendars = data.get("calendars") if isinstance(data, dict) else None
    if not isinstance(calendars, dict):
        return []
    return [
        base / cal["ics"]
        for cal in calendars.values()
        if isinstance(cal, dict) and isinstance(cal.get("ics"), str)
    ]


def _read_ics(
    model: RulesFile,
    root: yaml.Node,
    name: str,
    base_dir: Path,
    today: date,
    digest: Any,
    issues: list[Issue],
) -> Mapping[str, tuple[Closure, ...]]:
    """Closures of every calendar's ``ics:`` file; faults become issues.

    Each file's bytes go into ``digest``, so a changed ``.ics`` changes the
    rules' digest (a reload with an unchanged YAML is not "unchanged").
    An issue names the ``.ics`` file and its line, and the rules line that
    names the file.
    """
    found: dict[str, tuple[Closure, ...]] = {}
    try:
        tz = ZoneInfo(model.timezone)
    except (ValueError, KeyError, OSError):
        return found  # compile reports the time zone
    first = date(today.year - ICS_YEARS_BACK, 1, 1)
    last = date(today.year + ICS_YEARS_AHEAD, 12, 31)
    for key, cfg in model.calendars.items():
        if not cfg.ics:
            continue
        loc: Path_ = ("calendars", key, "ics")
        where = f"(named at {name}:{_line_for(root, loc)})"
        path = base_dir / cfg.ics
        try:
            raw = path.read_bytes()
        except OSError as exc:
            issues.append(
                Issue(
                    name,
                    _line_for(root, loc),
                    _dotted(loc),
                    f"cannot read {str(path)!r}: {exc.strerror or exc}",
                )
            )
            continue
        digest.update(hashlib.sha256(raw).digest())
        try:
            found[key] = closures(raw, tz=tz, first=first, last=last)
        except IcsError as exc:
            issues.append(Issue(str(path), exc.line, _dotted(loc), f"{exc.message} {where}"))
    return found


def _valid_part(data: dict[str, Any]) -> tuple[RulesFile, dict[str, frozenset[str]]]:
    """The sections and entries of an invalid file that are valid on their own."""
    present: dict[str, frozenset[str]] = {}
    fields: dict[str, Any] = {}
    sections: tuple[tuple[str, type[BaseModel]], ...] = (
        ("calendars", CalendarConfig),
        ("queues", QueueConfig),
        ("tenants", TenantConfig),
    )
    for section, model_cls in sections:
        raw = data.get(section)
        valid: dict[str, BaseModel] = {}
        if isinstance(raw, dict):
            for key, value in raw.items():
                if isinstance(key, str):
                    with contextlib.suppress(ValidationError):
                        valid[key] = model_cls.model_validate(value)
            present[section] = frozenset(k for k in raw if isinstance(k, str)) - valid.keys()
        fields[section] = valid
    for key, default in (("timezone", "UTC"), ("region", "DE")):
        value = data.get(key)
        fields[key] = value if isinstance(value, str) else default
    fields["service_115"] = _validate_or(Service115Config, data.get("service_115"), None)
    fields["unknown_did"] = _validate_or(
        UnknownDidConfig,
        data.get("unknown_did"),
        UnknownDidConfig.model_construct(tenant=None, reject=RejectConfig()),
    )
    fields["state"] = StateConfig()
    return RulesFile.model_construct(**fields), present


def _validate_or(model_cls: type[BaseModel], value: object, default: Any) -> Any:
    try:
        return model_cls.model_validate(value)
    except ValidationError:
        return default


def _parse_yaml(raw: bytes | str, name: str) -> tuple[Any, yaml.Node, list[Issue]]:
    size = len(raw)
    if size > MAX_FILE_BYTES:
        raise ConfigError([Issue(name, 0, "", f"file too large ({size} bytes)")])
    text = raw
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError([Issue(name, line, "", "not valid UTF-8")]) from None
    else:
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates in a str
            line = raw[: exc.start].count("\n") + 1
            raise ConfigError([Issue(name, line, "", "not valid UTF-8")]) from None
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            if root is None or (
                isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null"
            ):
                raise ConfigError([Issue(name, 1, "", "the file is empty")])
            found = list(_structure_problems(root))
            problems = [Issue(name, line, "", msg) for line, msg, _ in found]
            if any(fatal for _, _, fatal in found):
                raise ConfigError(problems)
            try:
                data = loader.construct_document(root)
            except (ValueError, KeyError, AttributeError, TypeError, OverflowError) as exc:
                # PyYAML raises plain Python errors for explicit tags it cannot
                # honour (``!!int abc``) or integers over Python's digit limit.
                line, text = _unconstructable(root)
                raise ConfigError(
                    [Issue(name, line, "", f"cannot read the value {text!r}: {exc}")]
                ) from None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        text = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError([Issue(name, line, "", f"YAML syntax: {text}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Issue(name, 0, "", f"YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([Issue(name, 0, "", "nested too deeply")]) from None
    if not isinstance(data, dict):
        raise ConfigError([Issue(name, root.start_mark.line + 1, "", "expected a mapping")])
    return data, root, problems


def _structure_problems(root: yaml.Node) -> Iterable[tuple[int, str, bool]]:
    """Duplicate keys, alias bombs and cycles, found on the node tree.

    PyYAML silently keeps the last of two equal keys, so a tenant defined twice
    would lose its first definition without a word; we refuse that instead.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Cycle(node.start_mark.line + 1)
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
        active.discard(key)
        sizes[key] = total
        return total

    try:
        if size(root) > MAX_EXPANDED_NODES:
            yield root.start_mark.line + 1, "document too large after expanding aliases", True
            return
    except _Cycle as cycle:
        yield cycle.line, "recursive alias (a node that contains itself)", True
        return

    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    line = k.start_mark.line + 1
                    if k.value in first:
                        yield (
                            line,
                            (
                                f"duplicate key {k.value!r} (first at line {first[k.value]}); "
                                "YAML would silently keep only the last one"
                            ),
                            False,
                        )
                    else:
                        first[k.value] = line
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


class _Cycle(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _dotted(loc: Path_) -> str:
    return ".".join(str(p) for p in loc)


def _node_at(root: yaml.Node, loc: Path_) -> tuple[yaml.Node, bool]:
    """The deepest node along ``loc`` and whether the whole path resolved.

    Merge keys (``<<``) are followed so that inherited values point at the
    anchor's line.
    """
    node = root
    for part in loc:
        nxt = _child(node, part)
        if nxt is None:
            return node, False
        node = nxt
    return node, True


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        merged: list[yaml.Node] = []
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        # The last of duplicate keys is the one YAML keeps, so search backwards.
        for k, v in reversed(pairs):
            if isinstance(k, yaml.ScalarNode):
                if k.value == "<<":
                    merged.append(v)
                elif _same_key(k, part):
                    return v
        for m in merged:
            sources = m.value if isinstance(m, yaml.SequenceNode) else [m]
            for src in sources:
                found = _child(src, part)
                if found is not None:
                    return found
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        items: list[yaml.Node] = node.value
        return items[part] if 0 <= part < len(items) else None
    return None


def _key_node(node: yaml.Node, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        for k, _ in reversed(pairs):
            if isinstance(k, yaml.ScalarNode) and _same_key(k, key):
                return k
    return None


def _same_key(node: yaml.ScalarNode, part: str | int) -> bool:
    """Whether a key node is the key pydantic named in an error location.

    pydantic names keys by their constructed value: an unquoted ``04407`` key is
    the octal number 2311 there, while the node still holds the text "04407".
    """
    if node.value == str(part):
        return True
    return node.tag != "tag:yaml.org,2002:str" and str(_constructed(node)) == str(part)


def _line_for(root: yaml.Node, loc: Path_) -> int:
    """The line of the entry a key path names.

    For a mapping entry that is the key's line (a block value starts one line
    lower, but the operator looks for the key); for a list item, the item's.
    """
    node, exact = _node_at(root, loc)
    if exact and loc:
        parent, _ = _node_at(root, loc[:-1])
        if isinstance(parent, yaml.MappingNode):
            key = _key_node(parent, loc[-1])
            if key is not None:
                return key.start_mark.line + 1
    return node.start_mark.line + 1


def _unconstructable(root: yaml.Node) -> tuple[int, str]:
    """Find the first scalar PyYAML cannot construct, for the error's line."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            probe = _Loader("")
            try:
                probe.construct_object(node, deep=True)
            except Exception:
                return node.start_mark.line + 1, str(node.value)[:40]
            finally:
                probe.dispose()
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return root.start_mark.line + 1, ""


_YAML_READ_AS = {
    "tag:yaml.org,2002:int": "the number {value}",
    "tag:yaml.org,2002:float": "the number {value}",
    "tag:yaml.org,2002:bool": "the boolean {value}",
    "tag:yaml.org,2002:null": "nothing (null)",
}


def _pydantic_issues(exc: ValidationError, root: yaml.Node, name: str) -> Iterable[Issue]:
    for err in exc.errors(include_url=False):
        loc: Path_ = tuple(err["loc"])
        kind = err["type"]
        message = err["msg"]
        is_key = bool(loc) and loc[-1] == "[key]"
        if is_key:
            loc = loc[:-1]
        if kind == "extra_forbidden":
            parent, _ = _node_at(root, loc[:-1])
            key_node = _key_node(parent, loc[-1])
            line = (key_node or parent).start_mark.line + 1
            yield Issue(name, line, _dotted(loc), f"unknown key {str(loc[-1])!r}")
            continue
        node, exact = _node_at(root, loc)
        if is_key and exact:
            parent, _ = _node_at(root, loc[:-1])
            node = _key_node(parent, loc[-1]) or node
            if isinstance(node, yaml.ScalarNode):
                loc = (*loc[:-1], node.value)  # name the key as written, not as read
        if kind == "missing":
            message = "required key is missing"
        elif kind in {"string_type", "int_type", "float_type", "bool_type"} and exact:
            message = _type_hint(node, kind, message, is_key)
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        yield Issue(name, node.start_mark.line + 1, _dotted(loc), message)


def _type_hint(node: yaml.Node, kind: str, message: str, is_key: bool) -> str:
    if not isinstance(node, yaml.ScalarNode):
        shape = "a mapping" if isinstance(node, yaml.MappingNode) else "a list"
        return f"{message}, got {shape}"
    read_as = _YAML_READ_AS.get(node.tag)
    if kind == "string_type" and read_as is not None:
        value = _constructed(node)
        what = "key" if is_key else "value"
        return (
            f"expected a quoted string, but YAML read the {what} {node.value!r} as "
            f'{read_as.format(value=value)}; write it in quotes: "{node.value}"'
        )
    if kind != "string_type" and node.tag == "tag:yaml.org,2002:str":
        return f"{message}, got the text {node.value!r} (remove the quotes?)"
    return message


def _constructed(node: yaml.ScalarNode) -> object:
    try:
        return yaml.safe_load(node.value) if node.value else None
    except yaml.YAMLError:
        return node.value
