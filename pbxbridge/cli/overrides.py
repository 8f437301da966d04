"""``pbxbridge override``: force tenants open or closed by hand, stored durably."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

import click

from pbxbridge.core import ALL_TENANTS, OverrideState
from pbxbridge.core.rules import Rules

if TYPE_CHECKING:
    pass
from pbxbridge.cli import base
from pbxbridge.cli.base import CONFIG_ENV, cli


@cli.group()
def override() -> None:
    """Force tenants open or closed by hand (stored durably)."""


_DURATION_RE = re.compile(r"^(\d+)\s*([mhd])$")


def _parse_until(
    until: str | None, duration: str | None, rules: Rules, now: datetime
) -> datetime | None:
    if until and duration:
        base.fail("give --until or --for, not both")
    if duration:
        m = _DURATION_RE.match(duration.strip())
        if not m:
            base.fail(f"--for {duration!r}: expected e.g. 30m, 2h or 1d")
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        span = timedelta(**{unit: min(int(m.group(1)), 10**7)})
        if span > timedelta(days=366):
            base.fail(f"--for {duration!r}: at most a year (366d); clear the override instead")
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
        base.fail(f"--until {until!r}: expected HH:MM or an ISO 8601 date and time")
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
    rules, model = base.load(config)
    scope = _scope(tenant, all_tenants, rules)
    if state is None:
        base.fail("give --open or --closed")
    if not reason.strip():
        base.fail("--reason must not be empty")
    now = base.now()
    expires = _parse_until(until, duration, rules, now)
    if expires is not None and expires <= now:
        base.fail("the expiry is in the past")
    with base.overrides(config, model) as store:
        item = store.set(
            scope,
            OverrideState(state),
            reason.strip(),
            at=now,
            expires_at=expires,
            set_by=base.user(),
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
    rules, model = base.load(config)
    with base.overrides(config, model) as store:
        if override_id is not None:
            if tenant or all_tenants:
                base.fail("give --id alone")
            count = store.clear(at=base.now(), override_id=override_id, cleared_by=base.user())
        else:
            scope = _scope(tenant, all_tenants, rules)
            count = store.clear(at=base.now(), scope=scope, cleared_by=base.user())
    click.echo(f"cleared {count} override(s)")
    if count == 0:
        sys.exit(1)


@override.command("list")
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option("--history", is_flag=True, help="Include cleared and expired ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def override_list(config: str, history: bool, as_json: bool) -> None:
    """List overrides in force (or the history)."""
    rules, model = base.load(config)
    now = base.now()
    tz = rules.timezone
    with base.overrides(config, model) as store:
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
        base.fail("give --tenant T or --all")
    if all_tenants:
        return ALL_TENANTS
    assert tenant is not None
    try:
        base.check_tenant(rules, tenant)
    except ValueError as exc:
        base.fail(str(exc))
    return tenant
