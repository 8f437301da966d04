"""The agents file: who may sign in to the agent page (``PBXBRIDGE_AGENTS_FILE``).

A YAML mapping from agent id to password hash (never a password), either as
plain ``agent: hash`` lines or with details::

    # pbxbridge agents - make hashes with `pbxbridge agent-password`
    agent1: $scrypt$ln=15,r=8,p=1$...$...
    agent2:
      password: $scrypt$ln=15,r=8,p=1$...$...
      name: Anna Schmidt          # shown on the page
      supervisor: true            # sees and closes every agent's callbacks

The agent id is the queue member's name as app_queue reports it (the same id
as in the MQTT topic ``agents/{agent}/screenpop``). The file is separate from
the routing rules and is re-read when it changes; a broken edit keeps the last
good version in force (and is reported in the log and ``/healthz``).
"""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import yaml

from pbxbridge.web.passwords import PasswordFormatError, ScryptHash, parse_hash

log = structlog.get_logger(__name__)

MAX_AGENT_ID = 64
MAX_AGENTS_FILE_BYTES = 1024 * 1024


class AgentsFileError(ValueError):
    """The agents file cannot be used."""


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent who may sign in.

    Attributes:
        id: The agent id (queue member name).
        password: The parsed scrypt hash.
        name: Display name (defaults to the id).
        supervisor: Sees and closes every agent's callbacks.
    """

    id: str
    password: ScryptHash
    name: str
    supervisor: bool = False

    @property
    def fingerprint(self) -> bytes:
        """Changes when the password changes (ends the agent's sessions)."""
        return self.password.key[:8]


def valid_agent_id(agent: str) -> bool:
    """Whether a string can be an agent id.

    Args:
        agent: Candidate id.

    Returns:
        True for 1..64 printable characters without surrounding spaces.
    """
    return 0 < len(agent) <= MAX_AGENT_ID and agent == agent.strip() and agent.isprintable()


def parse_agents(text: str, source: str = "agents file") -> dict[str, Agent]:
    """Parse the agents file.

    Args:
        text: The file's content.
        source: Name for messages.

    Returns:
        Agents by id.

    Raises:
        AgentsFileError: With every problem found.
    """
    try:
        data: Any = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise AgentsFileError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise AgentsFileError(f"{source}: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors let these through for tagged scalars such as
        # "!!int zz" or "!!timestamp 2020-13-45".
        raise AgentsFileError(f"{source}: a value cannot be read: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise AgentsFileError(f"{source}: expected 'agent: hash' lines (a mapping)")
    agents: dict[str, Agent] = {}
    problems: list[str] = []
    for key, value in data.items():
        agent = str(key)
        if not valid_agent_id(agent):
            problems.append(f"{agent!r}: not a valid agent id (1-{MAX_AGENT_ID} characters)")
            continue
        name, supervisor = agent, False
        if isinstance(value, Mapping):
            unknown = set(map(str, value)) - {"password", "name", "supervisor"}
            if unknown:
                problems.append(f"{agent}: unknown keys {sorted(unknown)}")
                continue
            hashed = value.get("password")
            name = str(value.get("name") or agent)[:80]
            supervisor = value.get("supervisor", False)
            if not isinstance(supervisor, bool):
                problems.append(f"{agent}: supervisor must be true or false")
                continue
        else:
            hashed = value
        if not isinstance(hashed, str):
            problems.append(f"{agent}: password hash missing (use `pbxbridge agent-password`)")
            continue
        try:
            password = parse_hash(hashed)
        except PasswordFormatError as exc:
            problems.append(
                f"{agent}: {exc} - store a hash made by `pbxbridge agent-password`, never "
                "a password"
            )
            continue
        agents[agent] = Agent(agent, password, name, supervisor)
    if problems:
        raise AgentsFileError(f"{source}: " + "; ".join(problems))
    return agents


class AgentsFile:
    """The agents file, re-read when its modification time or size changes.

    Args:
        path: The file.
        check_interval: Seconds between ``stat`` calls.
    """

    def __init__(self, path: str | Path, *, check_interval: float = 1.0) -> None:
        self.path = Path(path)
        self._interval = check_interval
        self._agents: dict[str, Agent] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = -1e9
        self.error: str | None = None
        self.loaded = False
        self._reload()

    def _reload(self) -> None:
        self._checked = time.monotonic()
        try:
            info = self.path.stat()
        except OSError as exc:
            self._fail(f"{self.path}: cannot read: {exc.strerror}")
            return
        stamp = (info.st_mtime, info.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if info.st_size > MAX_AGENTS_FILE_BYTES:
            self._fail(f"{self.path}: larger than {MAX_AGENTS_FILE_BYTES} bytes")
            return
        try:
            text = self.path.read_text(encoding="utf-8")
            agents = parse_agents(text, str(self.path))
        except (OSError, UnicodeDecodeError, AgentsFileError) as exc:
            self._fail(str(exc))
            return
        except Exception as exc:  # a file must never stop the daemon
            # Whatever a hand edit does to the parser, the last good agents
            # stay in force and the error shows in the log and /healthz.
            self._fail(f"{self.path}: cannot be read: {type(exc).__name__}: {exc}")
            return
        if info.st_mode & stat.S_IROTH:
            log.warning(
                "web.agents_file_world_readable",
                path=str(self.path),
                hint="chmod 0640 (the hashes are not passwords, but keep them private)",
            )
        self._agents = agents
        self.error = None
        self.loaded = True
        log.info("web.agents_loaded", path=str(self.path), agents=len(agents))

    def _fail(self, message: str) -> None:
        if message != self.error:
            log.error(
                "web.agents_file_invalid",
                error=message,
                kept=len(self._agents),
            )
        self.error = message

    def agents(self) -> Mapping[str, Agent]:
        """The agents in force (re-reads the file when it changed).

        Returns:
            Agents by id (the last good version if the file is broken now).
        """
        if time.monotonic() - self._checked >= self._interval:
            self._reload()
        return self._agents

    def get(self, agent: str) -> Agent | None:
        """One agent, or ``None``.

        Args:
            agent: The id.

        Returns:
            The agent.
        """
        return self.agents().get(agent)


def agents_file_line(agent: str, hashed: str) -> str:
    """One line for the agents file.

    Args:
        agent: The agent id.
        hashed: Its hash.

    Returns:
        ``agent: hash`` (the id quoted when YAML would read it as something else).
    """
    plain = _PLAIN_KEY.fullmatch(agent) is not None and agent.lower() not in _YAML_WORDS
    return f"{agent if plain else json.dumps(agent, ensure_ascii=False)}: {hashed}"


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"})
