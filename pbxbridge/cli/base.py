"""What every ``pbxbridge`` command shares: the group, loading rules, stores, time, errors."""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, NoReturn

import click
import psycopg

from pbxbridge import __version__
from pbxbridge.config import ConfigError, load_rules
from pbxbridge.config.compile import state_path
from pbxbridge.config.schema import RulesFile
from pbxbridge.core.rules import Rules
from pbxbridge.journal.store import JournalStore
from pbxbridge.runtime.settings import SettingsError, database_url_from_env
from pbxbridge.storage.overrides import OverrideStore, open_override_store
from pbxbridge.storage.postgres import redact_database_url

if TYPE_CHECKING:
    pass

CONFIG_ENV = "PBXBRIDGE_CONFIG"


def now() -> datetime:
    """The current instant, aware (tests replace it to fix the clock)."""
    return datetime.now().astimezone()


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def load(config: str) -> tuple[Rules, RulesFile]:
    """Load the rules or exit 1 after listing every error as FILE:LINE: key.path: message."""
    try:
        return load_rules(config)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        click.echo(f"{config}: {len(exc.issues)} error(s); rules not loaded", err=True)
        sys.exit(1)


def check_tenant(rules: Rules, tenant: str | None) -> None:
    """Refuse a ``--tenant`` the rules do not know, naming the ones they do.

    Raises:
        ValueError: ``unknown tenant 'x' (known: a, b)``.
    """
    if tenant is not None and tenant not in rules.tenants:
        raise ValueError(f"unknown tenant {tenant!r} (known: {', '.join(sorted(rules.tenants))})")


def database_url() -> str:
    """The shared PostgreSQL URL the daemon would use, or ``""`` (SQLite)."""
    try:
        return database_url_from_env()
    except SettingsError as exc:
        fail(str(exc))


@contextlib.contextmanager
def overrides(config: str, model: RulesFile) -> Iterator[OverrideStore]:
    """The override store the daemon reads: PostgreSQL when a URL is configured, else SQLite."""
    url = database_url()
    try:
        with open_override_store(url, state_path(model, config)) as store:
            yield store
    except psycopg.Error as exc:
        # Unreachable, refused, timed out: one line, not a traceback (and never
        # the URL, which may hold the password).
        fail(f"overrides database: {redact_database_url(str(exc), url).strip()}")


def parse_at(text: str | None, rules: Rules) -> tuple[datetime, str]:
    """The instant of ``--at`` and, for a wall-clock time skipped or repeated by DST, a note."""
    from pbxbridge.core.calendar import resolve_wall_clock

    if text is None:
        return now(), ""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"--at {text!r}: expected ISO 8601, e.g. 2026-11-25T10:00 or 2026-11-25T10:00+01:00")
    if value.tzinfo is None:
        # A wall-clock time means the rules' local time, read as one instant.
        return resolve_wall_clock(value, rules.timezone)
    return value, ""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pbxbridge")
def cli() -> None:
    """pbxbridge: route a telephone service centre's calls for many public authorities."""


def user() -> str:
    """The operator named in the overrides' audit trail."""
    # Under sudo (e.g. `sudo -u pbxbridge pbxbridge override ...`) the audit
    # trail should name the operator, not the service account.
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        return sudo_user
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def open_journal(config: str, model: RulesFile) -> JournalStore:
    """The journal the daemon writes: PostgreSQL when a URL is configured, else SQLite."""
    from pbxbridge.journal.backend import journal_opener

    return journal_opener(database_url(), state_path(model, config))()
