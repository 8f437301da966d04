"""Every repository path the code, docs and configs mention exists.

Docstrings, comments, READMEs and config files point readers at other files
(``docs/journal.md``, ``dialplans/pbxbridge.conf``, ``pbxbridge/schemas/...``).
When a file moves, such pointers silently go stale; this test finds them, and
dotted names (``pbxbridge.runtime.sdnotify``) that no longer import. It also
refuses paths of a development machine (``/work/...``), which no reader of the
repository has.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCANNED = {".py", ".md", ".conf", ".toml", ".sh", ".service", ".yaml", ".example"}
"""Suffixes of the files that are read for paths (text a person reads)."""

TOP = ("docs", "pbxbridge", "dialplans", "config", "systemd", "scripts", "benchmarks", "tests")

# A top-level directory, then path characters. Not after a path character or
# a placeholder opener: /etc/pbxbridge/..., ~/pbxbridge/..., ${X}/docs/... are
# not repository paths.
REPO_PATH = re.compile(rf"(?<![\w./~$<{{-])((?:{'|'.join(TOP)})/[\w./*<>{{}}-]*)")

NOT_PATHS = (
    # The MQTT topic root (pbxbridge/v1/agents/<id>/pop, ...), not a directory.
    "pbxbridge/v1",
    # Prose: "which pbxbridge/Asterisk node handled the call".
    "pbxbridge/Asterisk",
    # Asterisk sound names of the virtual hold (pbxbridge/vhold-offer ...), in
    # Asterisk's sounds directory, not in the repository.
    "pbxbridge/vhold-",
)

MACHINE_PATH = re.compile(r"(?<![\w.-])/work/")

DOTTED = re.compile(r"(?<![\w./-])(pbxbridge(?:\.[A-Za-z_]\w*)+)")

FILE_SUFFIXES = {"conf", "env", "example", "json", "md", "py", "service", "sqlite", "yaml"}
"""A dotted name ending in one of these is a file name (``pbxbridge.conf``,
``pbxbridge.env.example``, ``pbxbridge.sqlite``), not a module."""

MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")

ISSUE_NUMBER = re.compile(r"\bissues? #?\d+", re.IGNORECASE)

SELF = "tests/unit/test_repo_paths.py"
"""This file: its own examples of dangling paths are not pointers."""


def scanned_files() -> list[Path]:
    """The tracked and new (not ignored) files of the kinds in :data:`SCANNED`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [ROOT / name for name in listed if Path(name).suffix in SCANNED]


def mentioned_paths(text: str) -> list[tuple[int, str]]:
    """(line number, path) of every repository path mentioned in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in REPO_PATH.finditer(line):
            path = match.group(1).rstrip(".,:;)")
            if path.startswith(NOT_PATHS) or "/" not in path.rstrip("/"):
                continue
            found.append((number, path))
    return found


def mentioned_names(text: str) -> list[tuple[int, str]]:
    """(line number, dotted name) of every ``pbxbridge.x.y`` mentioned in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in DOTTED.finditer(line):
            name = match.group(1)
            if name.rsplit(".", 1)[-1] not in FILE_SUFFIXES:
                found.append((number, name))
    return found


def resolves(name: str) -> bool:
    """Whether ``name`` is a module of pbxbridge, or an attribute of one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def exists(path: str) -> bool:
    """Whether ``path`` names a file or directory, or a glob matches one."""
    if any(c in path for c in "*<{"):
        # A glob or a placeholder (tests/unit/test_web_*.py, dialplans/*.conf,
        # pbxbridge/schemas/<name>.json): the part before it must exist and
        # the glob, if it is one, must match something.
        head = re.split(r"[*<{]", path, maxsplit=1)[0]
        parent = (ROOT / head).parent if not head.endswith("/") else ROOT / head
        if not parent.exists():
            return False
        if "<" in path or "{" in path:
            return True
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {
        str(f.relative_to(ROOT)): f.read_text(encoding="utf-8", errors="replace")
        for f in scanned_files()
        if f.is_file() and f != ROOT / SELF
    }


def test_every_mentioned_repository_path_exists(texts: dict[str, str]) -> None:
    dangling = [
        f"{name}:{number}: {path}"
        for name, text in texts.items()
        for number, path in mentioned_paths(text)
        if not exists(path)
    ]
    assert not dangling, "paths that do not exist:\n" + "\n".join(dangling)


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines outside fenced code blocks (``[400](+)`` in an ini block is no link)."""
    lines: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def test_markdown_links_resolve(texts: dict[str, str]) -> None:
    # Relative links (``[journal](journal.md)``, ``../README.md``) resolve
    # against the linking file's directory, not the repository root.
    broken = [
        f"{name}:{number}: {target}"
        for name, text in texts.items()
        if name.endswith(".md")
        for number, line in _prose_lines(text)
        for target in MARKDOWN_LINK.findall(line)
        if not re.match(r"[a-z]+:", target) and not (ROOT / name).parent.joinpath(target).exists()
    ]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_mentioned_module_exists(texts: dict[str, str]) -> None:
    # ``pbxbridge.screenpops`` in a docstring after the module moved is as
    # stale as a file path.
    dangling = [
        f"{name}:{number}: {dotted}"
        for name, text in texts.items()
        for number, dotted in mentioned_names(text)
        if not resolves(dotted)
    ]
    assert not dangling, "modules or names that do not exist:\n" + "\n".join(dangling)


def test_no_paths_of_a_development_machine(texts: dict[str, str]) -> None:
    found = [
        f"{name}:{number}"
        for name, text in texts.items()
        for number, line in enumerate(text.splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert not found, "mentions of /work/...:\n" + "\n".join(found)


def test_no_issue_numbers(texts: dict[str, str]) -> None:
    # "(issue 7)" tells a reader nothing the code cannot say itself; the
    # changelog is where issues are named.
    found = [
        f"{name}:{number}: {line.strip()}"
        for name, text in texts.items()
        if name != "CHANGELOG.md"
        for number, line in enumerate(text.splitlines(), 1)
        if ISSUE_NUMBER.search(line)
    ]
    assert not found, "issue numbers:\n" + "\n".join(found)


def test_the_scan_sees_the_paths_it_checks() -> None:
    # The scanner itself: what it takes for a path, and what not.
    text = (
        "see ``docs/dependencies.md``, [x](docs/journal.md), `pbxbridge/app.py`.\n"
        "not /etc/pbxbridge/agents.yaml, ~/config/x, pbxbridge/v1/agents/a1/pop\n"
        "tests/unit/test_web_*.py and dialplans/\n"
    )
    assert mentioned_paths(text) == [
        (1, "docs/dependencies.md"),
        (1, "docs/journal.md"),
        (1, "pbxbridge/app.py"),
        (3, "tests/unit/test_web_*.py"),
    ]
    assert exists("pbxbridge/app.py")
    assert exists("tests/unit/test_web_*.py")
    assert exists("pbxbridge/schemas/<name>.json")
    assert not exists("docs/screenpop.schema.json")
    assert not exists("docs/dependencies")
    assert not exists("tests/unit/test_nothing_*.py")


def test_the_scan_sees_the_modules_it_checks() -> None:
    text = "see :mod:`pbxbridge.runtime.sdnotify`, ``pbxbridge.env`` and pbxbridge.core.route."
    assert mentioned_names(text) == [(1, "pbxbridge.runtime.sdnotify"), (1, "pbxbridge.core.route")]
    assert resolves("pbxbridge.runtime.sdnotify")
    assert resolves("pbxbridge.core.route")
    assert resolves("pbxbridge.adapters.ari.router.StasisRouter.handle")
    assert not resolves("pbxbridge.sdnotify")
    assert not resolves("pbxbridge.core.no_such_name")
