"""The ``pbxbridge`` command line: check and explain rules, calendars, overrides, the daemon."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import sys
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
import psycopg

from pbxbridge import __version__
from pbxbridge.config import ConfigError, load_rules
from pbxbridge.config.compile import state_path
from pbxbridge.config.schema import RulesFile
from pbxbridge.core import ALL_TENANTS, Call, Decision, OverrideState, route, servicelevel
from pbxbridge.core.calendar import WEEKDAYS
from pbxbridge.core.rules import Rules
from pbxbridge.journal.store import JournalStore
from pbxbridge.runtime.settings import SettingsError, database_url_from_env
from pbxbridge.storage.overrides import OverrideStore, open_override_store
from pbxbridge.storage.postgres import redact_database_url

if TYPE_CHECKING:
    from pbxbridge.journal.report import Granularity, RowSource

CONFIG_ENV = "PBXBRIDGE_CONFIG"


def _now() -> datetime:
    return datetime.now().astimezone()


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _load(config: str) -> tuple[Rules, RulesFile]:
    try:
        return load_rules(config)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        click.echo(f"{config}: {len(exc.issues)} error(s); rules not loaded", err=True)
        sys.exit(1)


def _database_url() -> str:
    """The shared PostgreSQL URL the daemon would use, or ``""`` (SQLite)."""
    try:
        return database_url_from_env()
    except SettingsError as exc:
        _fail(str(exc))


@contextlib.contextmanager
def _overrides(config: str, model: RulesFile) -> Iterator[OverrideStore]:
    """The override store the daemon reads: PostgreSQL when a URL is configured, else SQLite."""
    url = _database_url()
    try:
        with open_override_store(url, state_path(model, config)) as store:
            yield store
    except psycopg.Error as exc:
        # Unreachable, refused, timed out: one line, not a traceback (and never
        # the URL, which may hold the password).
        _fail(f"overrides database: {redact_database_url(str(exc), url).strip()}")


def _parse_at(text: str | None, rules: Rules) -> tuple[datetime, str]:
    """The instant of ``--at`` and, for a wall-clock time skipped or repeated by DST, a note."""
    from pbxbridge.core.calendar import resolve_wall_clock

    if text is None:
        return _now(), ""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        _fail(f"--at {text!r}: expected ISO 8601, e.g. 2026-11-25T10:00 or 2026-11-25T10:00+01:00")
    if value.tzinfo is None:
        # A wall-clock time means the rules' local time, read as one instant.
        return resolve_wall_clock(value, rules.timezone)
    return value, ""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pbxbridge")
def cli() -> None:
    """pbxbridge: route a telephone service centre's calls for many public authorities."""


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False), envvar=CONFIG_ENV)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when the file is valid.")
def check(config: str, quiet: bool) -> None:
    """Validate a rules file; list every error as FILE:LINE: key.path: message."""
    rules, _ = _load(config)
    if not quiet:
        click.echo(
            f"{config}: OK ({len(rules.tenants)} tenants, {len(rules.exact_dids)} numbers, "
            f"{len(rules.prefix_dids.entries)} number blocks, "
            f"{len(rules.service_115.by_area_code.entries) if rules.service_115 else 0} "
            "115 area codes)"
        )


@cli.command()
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option("--did", required=True, help="The dialled number as Asterisk would report it.")
@click.option("--caller", default="", help="Caller number; empty or 'anonymous' for withheld.")
@click.option("--caller-name", default="", help="Caller-ID display name.")
@click.option("--restricted", is_flag=True, help="The network marked the number withheld.")
@click.option("--digit", default=None, help="115 menu: the digit pressed ('' = timeout).")
@click.option("--at", "at_text", default=None, help="ISO 8601 instant; default now.")
@click.option("--no-overrides", is_flag=True, help="Ignore stored manual overrides.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def explain(
    config: str,
    did: str,
    caller: str,
    caller_name: str,
    restricted: bool,
    digit: str | None,
    at_text: str | None,
    no_overrides: bool,
    as_json: bool,
) -> None:
    """Show where a call would go, and why."""
    rules, model = _load(config)
    at, at_note = _parse_at(at_text, rules)
    overrides = []
    # Without a database URL, a state file nobody has written yet holds no
    # overrides: don't create one just to look.
    if not no_overrides and (_database_url() or state_path(model, config).exists()):
        with _overrides(config, model) as store:
            overrides = store.active(at)
    decision = route(
        Call(
            did=did, caller=caller, caller_name=caller_name, restricted=restricted, menu_digit=digit
        ),
        rules,
        at,
        overrides,
    )
    if as_json:
        out = decision.as_dict()
        out["at"] = at.isoformat()
        if at_note:
            out["at_note"] = at_note
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if at_note:
        click.echo(f"note:       --at {at_note}")
    click.echo(_describe(decision, rules))


def _describe(d: Decision, rules: Rules) -> str:
    lines = [f"action:     {d.action.value}"]
    if d.tenant:
        lines.append(f"tenant:     {d.tenant} ({d.tenant_name})")
        lines.append(f"greeting:   {d.greeting}")
    if d.queue is not None and d.closed is None:
        q = d.queue
        lines.append(
            f"queue:      {q.queue} via context {q.context}, priority {q.priority}"
            + (f", whisper {q.whisper}" if q.whisper else "")
        )
    if d.closed is not None:
        c = d.closed
        lines.append(
            f"closed:     announce {c.announce or '-'}, then {c.then.value}"
            + (f" {c.target}" if c.target else "")
        )
    if d.menu is not None:
        options = ", ".join(f"{k}={v}" for k, v in sorted(d.menu.options.items()))
        lines.append(f"menu:       {d.menu.prompt} ({options}; default {d.menu.default})")
    if d.reject is not None:
        lines.append(f"reject:     announce {d.reject.announce or '-'}")
    lines.append(f"did:        {d.did}")
    lines.append(f"caller:     {d.caller or 'withheld'}" + (" (115)" if d.via_115 else ""))
    if d.callerid_name:
        lines.append(f"caller-ID:  {d.callerid_name}")
    if d.screen_pop_url:
        lines.append(f"screen pop: {d.screen_pop_url}")
    lines.append("reasons:")
    lines.extend(f"  {i}. {r}" for i, r in enumerate(d.reasons, 1))
    return "\n".join(lines)


@cli.command()
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option("--tenant", required=True, help="Tenant id (or a calendar id).")
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "last", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def calendar(config: str, tenant: str, first: datetime, last: datetime, as_json: bool) -> None:
    """List open and closed periods day by day, with holiday names."""
    rules, _ = _load(config)
    if tenant in rules.tenants:
        cal = rules.tenants[tenant].calendar
    elif tenant in rules.calendars:
        cal = rules.calendars[tenant]
    else:
        _fail(f"unknown tenant or calendar {tenant!r} (known: {', '.join(sorted(rules.tenants))})")
    if last < first:
        _fail("--to is before --from")
    if (last - first).days > 731:
        _fail("at most two years at a time")
    days: dict[date, list[tuple[str, bool, str]]] = {}
    for period in cal.periods(first.date(), last.date()):
        span = f"{_hhmm(period.start)}-{_hhmm(period.end)}"
        days.setdefault(period.day, []).append((span, period.is_open, period.why))
    if as_json:
        payload = [
            {
                "date": day.isoformat(),
                "periods": [{"time": s, "open": o, "why": w} for s, o, w in periods],
            }
            for day, periods in days.items()
        ]
        click.echo(json.dumps({"calendar": cal.name, "days": payload}, ensure_ascii=False))
        return
    click.echo(f"calendar {cal.name} ({rules.timezone.key}), half-open intervals")
    for day, periods in days.items():
        opened = [s for s, o, _ in periods if o]
        head = f"{WEEKDAYS[day.weekday()].capitalize()} {day:%d.%m.%Y}"
        if opened:
            why = next(w for _, o, w in periods if o)
            click.echo(f"{head}  open   {', '.join(opened):<24} {why}")
        else:
            click.echo(f"{head}  closed {'':<24} {periods[0][2]}")


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@cli.group()
def override() -> None:
    """Force tenants open or closed by hand (stored durably)."""


_DURATION_RE = re.compile(r"^(\d+)\s*([mhd])$")


def _parse_until(
    until: str | None, duration: str | None, rules: Rules, now: datetime
) -> datetime | None:
    if until and duration:
        _fail("give --until or --for, not both")
    if duration:
        m = _DURATION_RE.match(duration.strip())
        if not m:
            _fail(f"--for {duration!r}: expected e.g. 30m, 2h or 1d")
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        span = timedelta(**{unit: min(int(m.group(1)), 10**7)})
        if span > timedelta(days=366):
            _fail(f"--for {duration!r}: at most a year (366d); clear the override instead")
        return now + span
    if not until:
        return None
    local_now = now.astimezone(rules.timezone)
    try:
        clock = time.fromisoformat(until.strip())
    except ValueError:
        clock = None
    if clock is not None and len(until.strip()) <= 8:
        # "bis 12:00": the next 12:00 in the rules' time zone.
        candidate = datetime.combine(local_now.date(), clock, rules.timezone)
        if candidate <= local_now:
            candidate = datetime.combine(
                local_now.date() + timedelta(days=1), clock, rules.timezone
            )
        return candidate
    try:
        value = datetime.fromisoformat(until.strip())
    except ValueError:
        _fail(f"--until {until!r}: expected HH:MM or an ISO 8601 date and time")
    return value if value.tzinfo else value.replace(tzinfo=rules.timezone)


@override.command("set")
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option("--tenant", help="Tenant id.")
@click.option("--all", "all_tenants", is_flag=True, help="Every tenant.")
@click.option("--open", "state", flag_value="open", help="Force open.")
@click.option("--closed", "state", flag_value="closed", help="Force closed.")
@click.option("--reason", required=True, help="Why (shown in traces), e.g. 'Unwetter'.")
@click.option("--until", help="HH:MM (next occurrence) or ISO 8601; default until cleared.")
@click.option("--for", "duration", help="Duration instead of --until: 30m, 2h, 1d.")
def override_set(
    config: str,
    tenant: str | None,
    all_tenants: bool,
    state: str | None,
    reason: str,
    until: str | None,
    duration: str | None,
) -> None:
    """Force a tenant (or all) open or closed."""
    rules, model = _load(config)
    scope = _scope(tenant, all_tenants, rules)
    if state is None:
        _fail("give --open or --closed")
    if not reason.strip():
        _fail("--reason must not be empty")
    now = _now()
    expires = _parse_until(until, duration, rules, now)
    if expires is not None and expires <= now:
        _fail("the expiry is in the past")
    with _overrides(config, model) as store:
        item = store.set(
            scope,
            OverrideState(state),
            reason.strip(),
            at=now,
            expires_at=expires,
            set_by=_user(),
        )
    who = "all tenants" if scope == ALL_TENANTS else scope
    end = (
        f"until {expires.astimezone(rules.timezone):%a %d.%m.%Y %H:%M %Z}"
        if expires
        else ("until cleared")
    )
    click.echo(f"override #{item.id}: {who} forced {state} {end} ({item.reason})")


@override.command("clear")
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option("--tenant", help="Clear the tenant's overrides.")
@click.option("--all", "all_tenants", is_flag=True, help="Clear the overrides set with --all.")
@click.option("--id", "override_id", type=int, help="Clear one override by id.")
def override_clear(
    config: str, tenant: str | None, all_tenants: bool, override_id: int | None
) -> None:
    """Clear overrides; routing follows the calendar again."""
    rules, model = _load(config)
    with _overrides(config, model) as store:
        if override_id is not None:
            if tenant or all_tenants:
                _fail("give --id alone")
            count = store.clear(at=_now(), override_id=override_id, cleared_by=_user())
        else:
            scope = _scope(tenant, all_tenants, rules)
            count = store.clear(at=_now(), scope=scope, cleared_by=_user())
    click.echo(f"cleared {count} override(s)")
    if count == 0:
        sys.exit(1)


@override.command("list")
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option("--history", is_flag=True, help="Include cleared and expired ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def override_list(config: str, history: bool, as_json: bool) -> None:
    """List overrides in force (or the history)."""
    rules, model = _load(config)
    now = _now()
    tz = rules.timezone
    with _overrides(config, model) as store:
        rows = store.history(200) if history else [(o, None, "") for o in store.active(now)]
    items = []
    for item, cleared_at, cleared_by in rows:
        items.append(
            {
                "id": item.id,
                "scope": item.scope,
                "state": item.state.value,
                "reason": item.reason,
                "set_at": item.set_at.astimezone(tz).isoformat(),
                "expires_at": item.expires_at.astimezone(tz).isoformat()
                if item.expires_at
                else None,
                "set_by": item.set_by,
                "cleared_at": cleared_at.astimezone(tz).isoformat() if cleared_at else None,
                "cleared_by": cleared_by or None,
                "in_force": cleared_at is None and item.active_at(now),
            }
        )
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False))
        return
    if not items:
        click.echo("no overrides in force")
        return
    for it in items:
        scope = "all tenants" if it["scope"] == ALL_TENANTS else it["scope"]
        status = "in force" if it["in_force"] else ("cleared" if it["cleared_at"] else "expired")
        click.echo(
            f"#{it['id']} {scope}: {it['state']} since {it['set_at']} until "
            f"{it['expires_at'] or 'cleared'} — {it['reason']} (by {it['set_by'] or '?'}; "
            f"{status})"
        )


def _scope(tenant: str | None, all_tenants: bool, rules: Rules) -> str:
    if bool(tenant) == all_tenants:
        _fail("give --tenant T or --all")
    if all_tenants:
        return ALL_TENANTS
    assert tenant is not None
    if tenant not in rules.tenants:
        _fail(f"unknown tenant {tenant!r} (known: {', '.join(sorted(rules.tenants))})")
    return tenant


def _user() -> str:
    # Under sudo (e.g. `sudo -u pbxbridge pbxbridge override ...`) the audit
    # trail should name the operator, not the service account.
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        return sudo_user
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


@cli.command()
@click.option(
    "-c",
    "--config",
    required=True,
    envvar=CONFIG_ENV,
    type=click.Path(dir_okay=False),
    help="The routing rules file.",
)
@click.option("--ari-url", envvar="PBXBRIDGE_ARI_URL", help="Asterisk HTTP base URL.")
@click.option(
    "--http-bind", envvar="PBXBRIDGE_HTTP_BIND", help="HOST:PORT of /healthz (port 0: off)."
)
def run(config: str, ari_url: str | None, http_bind: str | None) -> None:
    """Run the daemon: route Stasis calls over ARI until SIGTERM.

    Connection settings come from the environment (PBXBRIDGE_ARI_URL,
    PBXBRIDGE_ARI_USER, PBXBRIDGE_ARI_APP, PBXBRIDGE_HTTP_BIND, PBXBRIDGE_LOG_LEVEL,
    PBXBRIDGE_LOG_FORMAT); the ARI password from $CREDENTIALS_DIRECTORY/ari-password,
    PBXBRIDGE_ARI_PASSWORD_FILE or PBXBRIDGE_ARI_PASSWORD.
    """
    import asyncio

    from pbxbridge.app import Daemon
    from pbxbridge.runtime.logs import configure_logging
    from pbxbridge.runtime.settings import Settings

    env = dict(os.environ)
    if ari_url:
        env["PBXBRIDGE_ARI_URL"] = ari_url
    if http_bind:
        env["PBXBRIDGE_HTTP_BIND"] = http_bind
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        _fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    sys.exit(asyncio.run(Daemon(config, settings).run()))


def _open_journal(config: str, model: RulesFile) -> JournalStore:
    """The journal the daemon writes: PostgreSQL when a URL is configured, else SQLite."""
    from pbxbridge.journal.backend import journal_opener

    return journal_opener(_database_url(), state_path(model, config))()


def run_report_cli(
    journal: RowSource,
    rules: Rules,
    *,
    start: date,
    end: date,
    by: Granularity | None = None,
    tenant: str | None = None,
    fmt: str = "table",
    now: datetime,
    threshold_s: float = servicelevel.THRESHOLD_S,
    short_abandon_s: float = servicelevel.SHORT_ABANDON_S,
) -> str:
    """Everything ``pbxbridge report`` does except parsing options and printing.

    Loads the rows (:func:`~pbxbridge.journal.report.report_rows`: the period's
    calls and the callbacks due in it),
    builds the report in the rules' time zone with every tenant of the rules
    listed (zeros for tenants without calls) and renders it.

    Args:
        journal: The journal store.
        rules: The loaded rules (time zone, tenants).
        start: First local date.
        end: Last local date (inclusive).
        by: Granularity, or ``None`` for totals only.
        tenant: Only this tenant (required for ``invoice``).
        fmt: ``table``, ``csv``, ``json`` or ``invoice`` (the German per-tenant CSV).
        now: The current instant (aware), for overdue callbacks.
        threshold_s: Service-level threshold.
        short_abandon_s: Short-abandon limit.

    Returns:
        The text to print or write; CSV formats start with a byte-order mark,
        so writing the text as UTF-8 gives a file German Excel opens correctly.

    Raises:
        ValueError: Unknown tenant or format, ``invoice`` without a tenant,
            reversed period, negative thresholds. The message is for the user.
    """
    from pbxbridge.journal.render import (
        FORMATS,
        format_csv,
        format_json,
        format_table,
        monthly_invoice_csv,
    )
    from pbxbridge.journal.report import build_report, report_rows

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    if tenant is not None and tenant not in rules.tenants:
        raise ValueError(f"unknown tenant {tenant!r} (known: {', '.join(sorted(rules.tenants))})")
    if fmt == "invoice" and tenant is None:
        raise ValueError("the invoice format is per tenant: give a tenant")
    if threshold_s < 0 or short_abandon_s < 0:
        raise ValueError("thresholds must not be negative")
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    tz = rules.timezone
    report = build_report(
        report_rows(journal, start, end, tz, tenant),
        start=start,
        end=end,
        tz=tz,
        by=by,
        tenant=tenant,
        now=now,
        threshold_s=threshold_s,
        short_abandon_s=short_abandon_s,
        tenants=rules.tenants,
    )
    if fmt == "csv":
        return format_csv(report, bom=True)
    if fmt == "invoice":
        assert tenant is not None
        return monthly_invoice_csv(report, tenant, bom=True)
    if fmt == "json":
        return format_json(report)
    return format_table(report)


@cli.command()
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First day (local).")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last day (inclusive).")
@click.option("--month", type=click.DateTime(["%Y-%m"]), help="A whole month instead.")
@click.option("--tenant", help="Only this tenant (required for --format invoice).")
@click.option("--by", type=click.Choice(["hour", "day", "month"]), help="Buckets.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "invoice"]),
    default="table",
    show_default=True,
)
@click.option(
    "--threshold",
    type=float,
    default=servicelevel.THRESHOLD_S,
    show_default=True,
    help="Service-level threshold in seconds.",
)
@click.option(
    "--short-abandon",
    type=float,
    default=servicelevel.SHORT_ABANDON_S,
    show_default=True,
    help="Abandons shorter than this are shown apart.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
def report(
    config: str,
    first: datetime | None,
    last: datetime | None,
    month: datetime | None,
    tenant: str | None,
    by: str | None,
    fmt: str,
    threshold: float,
    short_abandon: float,
    output: str | None,
) -> None:
    """Service level per tenant from the call journal."""
    from pbxbridge.journal.report import month_range

    rules, model = _load(config)
    if month is not None:
        if first or last:
            _fail("give --month or --from/--to, not both")
        start, end = month_range(month.year, month.month)
    elif first is not None and last is not None:
        start, end = first.date(), last.date()
    else:
        _fail("give --from and --to, or --month")
    journal = _open_journal(config, model)
    try:
        text = run_report_cli(
            journal,
            rules,
            start=start,
            end=end,
            by=by,  # type: ignore[arg-type]
            tenant=tenant,
            fmt=fmt,
            now=_now(),
            threshold_s=threshold,
            short_abandon_s=short_abandon,
        )
    except ValueError as exc:
        _fail(str(exc))
    finally:
        journal.close()
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"written to {output}", err=True)
    else:
        click.echo(text, nl=not text.endswith("\n"))


@cli.command()
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option(
    "--days",
    type=int,
    default=None,
    help="Retention in days (default 90 or PBXBRIDGE_RETENTION_DAYS).",
)
def purge(config: str, days: int | None) -> None:
    """Remove personal data (caller and callback numbers, agents' notes) after the retention period.

    Counts, times and outcomes stay for the reports. Entries of such calls in
    the journal spool's rejected.jsonl are removed too.
    """
    from pbxbridge.journal.backend import spool_dir
    from pbxbridge.journal.retention import purge_older_than
    from pbxbridge.runtime.settings import Settings

    _, model = _load(config)
    days = days if days is not None else Settings.from_env().retention_days
    journal = _open_journal(config, model)
    try:
        # The daemon's spool directory.
        spool = spool_dir(state_path(model, config))
        count = purge_older_than(journal, days=days, now=_now(), spool_dir=spool)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        journal.close()
    click.echo(f"removed personal data from {count} call(s) older than {days} days")


@cli.command()
@click.option("--agent", help="Only this agent's screen pops (default: every agent).")
@click.option("--tenant", help="Watch a tenant's wallboard stream instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON messages.")
@click.option("--count", type=int, default=0, help="Stop after this many messages.")
def watch(agent: str | None, tenant: str | None, as_json: bool, count: int) -> None:
    """Print screen pops live (broker settings from PBXBRIDGE_MQTT_*)."""
    import asyncio

    from pbxbridge.adapters.mqtt import MqttSettings, subscribe
    from pbxbridge.tracking.call_tracker import agent_topic_relative, tenant_topic_relative

    try:
        settings = MqttSettings.from_env()
    except ValueError as exc:
        _fail(str(exc))
    # Topics below the prefix, built as the daemon builds them: subscribe()
    # adds the prefix (adding it here too subscribed to "<prefix>/<prefix>/...").
    if tenant:
        topic = tenant_topic_relative(tenant)
    elif agent:
        topic = agent_topic_relative(agent)
    else:
        topic = "agents/+/screenpop"  # agent_topic_relative() with a wildcard level

    async def loop() -> None:
        seen = 0
        shown = settings.full_topic(topic)
        click.echo(f"watching {shown} on {settings.host} (Ctrl-C to stop)", err=True)
        async for topic_name, payload in subscribe(settings, topic):
            click.echo(
                payload.decode("utf-8", "replace")
                if as_json
                else _describe_pop(topic_name, payload)
            )
            seen += 1
            if count and seen >= count:
                return

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(loop())


def _describe_pop(topic: str, payload: bytes) -> str:
    try:
        m = json.loads(payload)
    except ValueError:
        return f"{topic}: (not JSON) {payload[:80]!r}"
    if not isinstance(m, dict):
        return f"{topic}: {m!r}"
    if "caller" not in m:  # wallboard stream
        return (
            f"{m.get('at', '')[11:19]}  {m.get('tenant', '')}  {m.get('event', ''):<9}  "
            f"waited {m.get('waited_s', 0)} s  {m.get('agent', '')}"
        )
    caller = m.get("caller") or {}
    number = caller.get("number") or "unterdrückt"
    tenant = m.get("tenant") or {}
    flag = "  [115]" if m.get("via_115") else ""
    repeat = m.get("repeat_calls_7d")
    again = f"  {repeat}x in 7 Tagen" if repeat else ""
    return (
        f"{str(m.get('at', ''))[11:19]}  {m.get('agent', '')}  {m.get('event', '').upper():<8} "
        f'{tenant.get("name", "")}: "{tenant.get("greeting", "")}"  {number} '
        f"{caller.get('name', '')}  waited {m.get('waited_s', 0)} s{flag}{again}  "
        f"{m.get('kb_url') or ''}"
    )


@cli.command("agent-password")
@click.option("--agent", help="Print a whole 'agent: hash' line for this agent id.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--cost",
    type=click.IntRange(10, 20),
    default=15,
    show_default=True,
    help="scrypt cost as log2(N).",
)
def agent_password(agent: str | None, from_stdin: bool, cost: int) -> None:
    """Hash an agent's password for the agents file (PBXBRIDGE_AGENTS_FILE).

    Prompts twice (hidden) unless --stdin is given. Prints only the hash (or the
    whole line with --agent); the password itself is never stored.
    """
    from pbxbridge.web.agents import agents_file_line, valid_agent_id
    from pbxbridge.web.passwords import (
        MAX_PASSWORD_CHARS,
        MIN_AGENT_PASSWORD_CHARS,
        hash_password,
    )

    if agent is not None and not valid_agent_id(agent):
        _fail(f"--agent {agent!r}: 1-64 printable characters without surrounding spaces")
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    if not password:
        _fail("empty password")
    if len(password) < MIN_AGENT_PASSWORD_CHARS:
        _fail(
            f"password too short: {len(password)} characters, at least "
            f"{MIN_AGENT_PASSWORD_CHARS} needed (a passphrase of a few words is easy to type)"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        _fail(f"password longer than {MAX_PASSWORD_CHARS} characters")
    hashed = hash_password(password, ln=cost)
    click.echo(agents_file_line(agent, hashed) if agent else hashed)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the rules file (for editors)."""
    doc = RulesFile.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["$id"] = "https://pbxbridge.invalid/schema/routing-rules-v1.json"
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pbxbridge")


if __name__ == "__main__":  # pragma: no cover
    main()
