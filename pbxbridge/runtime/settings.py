"""Daemon settings: connection details from the environment, secrets from files.

The routing rules (what operators edit) never hold secrets. Connection
settings come from environment variables (``/etc/pbxbridge/pbxbridge.env`` under
systemd); passwords come from systemd credentials (``$CREDENTIALS_DIRECTORY``),
from a file named by ``PBXBRIDGE_<NAME>_PASSWORD_FILE``, or, for development,
from ``PBXBRIDGE_<NAME>_PASSWORD``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(ValueError):
    """A setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs besides the rules.

    Attributes:
        ari_url: Asterisk HTTP base URL (without ``/ari``).
        ari_user: ARI user.
        ari_password: ARI password (never logged).
        ari_app: Stasis application name (the dialplan's ``Stasis(...)``).
        http_host: Bind address of the health/metrics HTTP server.
        http_port: Its port (0 disables it).
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        log_format: ``json`` (for journald/log shippers) or ``console``.
        rules_poll_s: How often the rules file is checked for changes.
        overrides_poll_s: How often the overrides database is checked.
        ari_backoff_max_s: Cap of the ARI reconnect backoff. Asterisk is on
            loopback and a restart takes about a second: a low cap gets calls
            routed again quickly without hammering anything.
        stasis_max_s: Longest time a channel may stay in the Stasis
            application (``PBXBRIDGE_STASIS_MAX_S``, 2-120 s): after it, the call
            is continued to ``pbxbridge-unrouted`` whatever it waits for. The
            115 menu's digit timeout is clamped to fit inside it.
        ami_enabled: Follow app_queue over AMI (screen pops, call journal).
        ami_host: AMI host.
        ami_port: AMI port.
        ami_user: AMI user.
        ami_password: AMI secret (never logged).
        mqtt_enabled: Publish screen pops over MQTT (``PBXBRIDGE_MQTT_*``).
        ring_timeout_s: A ringing pop not delivered within this is dropped.
        node: This node's name in a shared journal (``PBXBRIDGE_NODE``,
            default the host name).
        database_url: PostgreSQL URL of a journal shared by several nodes
            (credential ``database-url``, ``PBXBRIDGE_DATABASE_URL_FILE`` or
            ``PBXBRIDGE_DATABASE_URL``); empty: SQLite beside the state file.
        retention_days: Caller numbers are removed from the journal after this.
        agi_enabled: Run the FastAGI server (``AGI(agi://127.0.0.1:4574/route,...)``).
        event_loop: ``uvloop`` (default) or ``asyncio`` (``PBXBRIDGE_EVENT_LOOP``):
            which event loop runs the daemon (:mod:`pbxbridge.runtime.loop`).
        agi_host: FastAGI bind address (keep it on loopback).
        agi_port: FastAGI port (0: any free port, for tests). Not 4573:
            FreePBX runs its own FastAGI server there.
        agi_secret: Shared secret every FastAGI session must pass as its first
            argument (credential ``agi-secret``, ``PBXBRIDGE_AGI_SECRET_FILE`` or
            ``PBXBRIDGE_AGI_SECRET``); empty: sessions are not authenticated.
        web_agents_file: Agents file of the agent page (``PBXBRIDGE_AGENTS_FILE``);
            empty: no agent page.
        web_secure_cookies: Mark the page's cookies ``Secure`` (behind a TLS
            reverse proxy; ``PBXBRIDGE_WEB_SECURE_COOKIES``).
        web_session_secret: Key of the page's session cookies (credential
            ``web-session-password``, ``PBXBRIDGE_WEB_SESSION_PASSWORD_FILE`` or
            ``PBXBRIDGE_WEB_SESSION_PASSWORD``); empty: a random key per start.
        web_trusted_proxies: Reverse proxies whose ``X-Forwarded-For`` names the
            client (``PBXBRIDGE_WEB_TRUSTED_PROXIES``, comma-separated addresses
            or networks); empty: the TCP peer is the client.
    """

    ari_url: str = "http://127.0.0.1:8088"
    ari_user: str = "pbxbridge"
    ari_password: str = field(default="", repr=False)
    ari_app: str = "pbxbridge"
    http_host: str = "127.0.0.1"
    http_port: int = 8090
    log_level: str = "info"
    log_format: str = "json"
    rules_poll_s: float = 1.0
    overrides_poll_s: float = 0.5
    ari_backoff_max_s: float = 1.0
    stasis_max_s: float = 10.0
    ami_enabled: bool = True
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_user: str = "pbxbridge"
    ami_password: str = field(default="", repr=False)
    mqtt_enabled: bool = True
    ring_timeout_s: float = 20.0
    # Call journal
    node: str = field(default_factory=socket.gethostname)
    database_url: str = field(default="", repr=False)
    retention_days: int = 90
    # FastAGI entry point
    agi_enabled: bool = True
    agi_host: str = "127.0.0.1"
    agi_port: int = 4574
    agi_secret: str = field(default="", repr=False)
    # Agent page
    web_agents_file: str = ""
    web_secure_cookies: bool = False
    web_session_secret: str = field(default="", repr=False)
    web_trusted_proxies: tuple[str, ...] = ()
    event_loop: str = "uvloop"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the environment.

        Args:
            env: The environment (default ``os.environ``).

        Returns:
            The settings.

        Raises:
            SettingsError: On malformed values.
        """
        env = os.environ if env is None else env
        host, port = _bind(env.get("PBXBRIDGE_HTTP_BIND", "127.0.0.1:8090"))
        level = env.get("PBXBRIDGE_LOG_LEVEL", "info").lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise SettingsError(f"PBXBRIDGE_LOG_LEVEL={level!r}: use debug, info, warning, error")
        agi_host, agi_port = _bind(
            env.get("PBXBRIDGE_AGI_BIND", "127.0.0.1:4574"), "PBXBRIDGE_AGI_BIND"
        )
        fmt = env.get("PBXBRIDGE_LOG_FORMAT", "json").lower()
        if fmt not in {"json", "console"}:
            raise SettingsError(f"PBXBRIDGE_LOG_FORMAT={fmt!r}: use json or console")
        event_loop = env.get("PBXBRIDGE_EVENT_LOOP", "uvloop").strip().lower() or "uvloop"
        if event_loop not in {"uvloop", "asyncio"}:
            raise SettingsError(f"PBXBRIDGE_EVENT_LOOP={event_loop!r}: use uvloop or asyncio")
        return cls(
            ari_url=env.get("PBXBRIDGE_ARI_URL", cls.ari_url).rstrip("/"),
            ari_user=env.get("PBXBRIDGE_ARI_USER", cls.ari_user),
            ari_password=read_secret("ari", env),
            ari_app=env.get("PBXBRIDGE_ARI_APP", cls.ari_app),
            http_host=host,
            http_port=port,
            log_level=level,
            log_format=fmt,
            ari_backoff_max_s=_positive(env, "PBXBRIDGE_ARI_BACKOFF_MAX", cls.ari_backoff_max_s),
            stasis_max_s=_stasis_max(env),
            ami_enabled=_flag(env, "PBXBRIDGE_AMI_ENABLED", default=True),
            ami_host=env.get("PBXBRIDGE_AMI_HOST", cls.ami_host),
            ami_port=int(_positive(env, "PBXBRIDGE_AMI_PORT", cls.ami_port)),
            ami_user=env.get("PBXBRIDGE_AMI_USER", cls.ami_user),
            ami_password=read_secret("ami", env),
            mqtt_enabled=_flag(env, "PBXBRIDGE_MQTT_ENABLED", default=True),
            ring_timeout_s=_positive(env, "PBXBRIDGE_RING_TIMEOUT", cls.ring_timeout_s),
            node=env.get("PBXBRIDGE_NODE", "").strip() or socket.gethostname(),
            database_url=_database_url(env),
            retention_days=int(_positive(env, "PBXBRIDGE_RETENTION_DAYS", cls.retention_days)),
            agi_enabled=_flag(env, "PBXBRIDGE_AGI_ENABLED", default=True),
            agi_host=agi_host,
            agi_port=agi_port,
            agi_secret=_agi_secret(env),
            web_agents_file=env.get("PBXBRIDGE_AGENTS_FILE", "").strip(),
            web_secure_cookies=_flag(env, "PBXBRIDGE_WEB_SECURE_COOKIES", default=False),
            web_session_secret=read_secret("web-session", env),
            web_trusted_proxies=_networks(env, "PBXBRIDGE_WEB_TRUSTED_PROXIES"),
            event_loop=event_loop,
        )


def database_url_from_env(env: Mapping[str, str] | None = None) -> str:
    """The PostgreSQL URL shared by the nodes, as :meth:`Settings.from_env` reads it.

    For commands that need only this setting (the CLI's overrides and journal):
    other malformed settings do not stop them.

    Args:
        env: The environment (default ``os.environ``).

    Returns:
        The URL, or ``""`` when none is configured (SQLite beside the state).

    Raises:
        SettingsError: If ``PBXBRIDGE_DATABASE_URL_FILE`` cannot be read.
    """
    return _database_url(os.environ if env is None else env)


def _database_url(env: Mapping[str, str]) -> str:
    # The URL may carry a password, so it is read like one.
    return read_credential(env, credential="database-url", variable="PBXBRIDGE_DATABASE_URL")


def read_credential(env: Mapping[str, str], *, credential: str, variable: str) -> str:
    """A secret that is not a password (a URL, a token), from the safest source given.

    Order: systemd credential ``$CREDENTIALS_DIRECTORY/<credential>`` (an empty
    one counts as absent); the file named in ``<variable>_FILE``; ``<variable>``.
    Surrounding white space is stripped.

    Args:
        env: The environment.
        credential: The systemd credential's name (``database-url``).
        variable: The environment variable (``PBXBRIDGE_DATABASE_URL``).

    Returns:
        The value, or ``""`` when none is configured.

    Raises:
        SettingsError: If the file named in ``<variable>_FILE`` cannot be read
            (the message names the file, never its content).
    """
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        path = Path(cred_dir) / credential
        if path.is_file():
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return value
    named = env.get(f"{variable}_FILE")
    if named:
        try:
            return Path(named).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"{variable}_FILE: cannot read {named}: {exc.strerror}") from None
    return env.get(variable, "").strip()


AGI_SECRET_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,256}\Z")
"""What a FastAGI secret may look like. WHY this alphabet: the dialplan passes it
as an ``AGI()`` argument, where a comma would split it, quotes and backslashes
would be eaten by the argument parser and ``$``/braces would be substituted."""


def _agi_secret(env: Mapping[str, str]) -> str:
    # Read like a password (credential "agi-secret", then a named file, then the
    # variable) and never from the routing YAML, which operators edit and share.
    value = ""
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    path = Path(cred_dir) / "agi-secret" if cred_dir else None
    named = env.get("PBXBRIDGE_AGI_SECRET_FILE")
    if path is not None and path.is_file():
        value = path.read_text(encoding="utf-8").strip()
    if not value and named:
        try:
            value = Path(named).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"PBXBRIDGE_AGI_SECRET_FILE: cannot read {named}: {exc.strerror}"
            ) from None
    if not value:
        value = env.get("PBXBRIDGE_AGI_SECRET", "").strip()
    if value and not AGI_SECRET_PATTERN.match(value):
        # The message never echoes the value.
        raise SettingsError(
            f"FastAGI secret ({len(value)} characters): use 16 to 256 of A-Z a-z 0-9 . _ ~ -"
        )
    return value


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in {"1", "yes", "true", "on"}:
        return True
    if text in {"0", "no", "false", "off"}:
        return False
    raise SettingsError(f"{name}={text!r}: use yes or no")


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r}: expected seconds") from None
    if not 0 < value <= 65535:
        raise SettingsError(f"{name}={text!r}: expected a positive number up to 65535")
    return value


def _stasis_max(env: Mapping[str, str]) -> float:
    # Below 2 s even an ordinary routing hiccup would send calls untagged; above
    # 120 s a caller would hear silence for minutes, which the bound exists to stop.
    value = _positive(env, "PBXBRIDGE_STASIS_MAX_S", Settings.stasis_max_s)
    if not 2 <= value <= 120:
        raise SettingsError(f"PBXBRIDGE_STASIS_MAX_S={value:g}: expected 2 to 120 seconds")
    return value


def _bind(text: str, name: str = "PBXBRIDGE_HTTP_BIND") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{name}={text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    items = tuple(i.strip() for i in env.get(name, "").split(",") if i.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name}: {item!r} is not an IP address or network (e.g. 127.0.0.1, "
                "10.0.0.0/8, ::1)"
            ) from None
    return items


def read_secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """A password by name (``ari``, ``ami``, ``mqtt``), from the safest source given.

    Order: systemd credential ``$CREDENTIALS_DIRECTORY/<name>-password``;
    the file in ``PBXBRIDGE_<NAME>_PASSWORD_FILE``; ``PBXBRIDGE_<NAME>_PASSWORD``.
    A trailing newline is stripped; an empty credential file counts as absent
    (the unit ships an empty placeholder for optional secrets).

    Args:
        name: Secret name.
        env: The environment (default ``os.environ``).

    Returns:
        The secret, or ``""`` when none is configured.

    Raises:
        SettingsError: If a named file cannot be read.
    """
    env = os.environ if env is None else env
    # Credential names may have hyphens; environment names cannot (systemd's
    # Environment= and most shells refuse them): "web-session" -> WEB_SESSION.
    upper = name.upper().replace("-", "_")
    candidates: list[Path] = []
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        candidates.append(Path(cred_dir) / f"{name}-password")
    named = env.get(f"PBXBRIDGE_{upper}_PASSWORD_FILE")
    for path in candidates:
        if path.is_file():
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
            if value:
                return value
    if named:
        try:
            return Path(named).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SettingsError(
                f"PBXBRIDGE_{upper}_PASSWORD_FILE: cannot read {named}: {exc.strerror}"
            ) from None
    return env.get(f"PBXBRIDGE_{upper}_PASSWORD", "")
