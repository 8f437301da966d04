"""``pbxbridge virtual-holds``: the callbacks the daemon owes, and what became of the others.

Reads the virtual-hold store the daemon writes (the shared PostgreSQL when a
database URL is configured, else the node's state file). Numbers are shown
shortened, as everywhere outside the agent's own screen.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import click
import psycopg

from pbxbridge.cli import base
from pbxbridge.cli.base import CONFIG_ENV, cli
from pbxbridge.config.compile import state_path
from pbxbridge.core.numbers import shorten
from pbxbridge.core.virtual_hold import VirtualHold
from pbxbridge.storage.postgres import redact_database_url


def hold_dict(hold: VirtualHold, tz: ZoneInfo) -> dict[str, object]:
    """One hold for ``--json`` (times local ISO 8601, number shortened).

    Args:
        hold: The hold.
        tz: The rules' time zone.

    Returns:
        A JSON-ready dict.
    """

    def local(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(tz).isoformat()

    return {
        "node": hold.node,
        "call_id": hold.call_id,
        "tenant": hold.tenant,
        "state": hold.state.value,
        "number": shorten(hold.number) if hold.number else None,
        "arrived": local(hold.arrived_at),
        "accepted": local(hold.accepted_at),
        "position": hold.position,
        "tries": [
            {"started": local(a.started_at), "outcome": a.outcome or "ringing", "agent": a.agent}
            for a in hold.attempts
        ],
        "next_try": local(hold.next_try_at),
        "connected": local(hold.connected_at),
        "ticket_due": local(hold.ticket_due_at),
        "events": [[local(at), event, detail] for at, event, detail in hold.events],
    }


def hold_line(hold: VirtualHold, tz: ZoneInfo) -> str:
    """One hold as a table line."""

    def hhmm(value: datetime | None) -> str:
        return "-" if value is None else value.astimezone(tz).strftime("%d.%m. %H:%M")

    number = shorten(hold.number) if hold.number else "-"
    return (
        f"{hold.tenant:<16} {hold.state.value:<13} {number:<10} "
        f"{hhmm(hold.accepted_at):<12} {len(hold.attempts):>5}  {hhmm(hold.next_try_at):<12} "
        f"{hold.node}/{hold.call_id}"
    )


@cli.command("virtual-holds")
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option(
    "--days",
    type=int,
    default=None,
    help="Every hold of calls in the last N days, not only the pending ones.",
)
@click.option("--tenant", help="Only this tenant.")
@click.option("--json", "as_json", is_flag=True, help="JSON with each hold's steps.")
def virtual_holds(config: str, days: int | None, tenant: str | None, as_json: bool) -> None:
    """The callbacks the daemon owes (virtual holds), oldest request first."""
    from pbxbridge.storage.virtual_holds import open_virtual_hold_store

    rules, model = base.load(config)
    try:
        base.check_tenant(rules, tenant)
    except ValueError as exc:
        base.fail(str(exc))
    if days is not None and days < 1:
        base.fail("--days must be at least 1")
    url = base.database_url()
    try:
        with open_virtual_hold_store(url, state_path(model, config)) as store:
            if days is None:
                holds = [h for h in store.pending() if tenant is None or h.tenant == tenant]
            else:
                now = base.now()
                holds = store.between(now - timedelta(days=days), now, tenant)
    except psycopg.Error as exc:
        base.fail(f"virtual-hold database: {redact_database_url(str(exc), url).strip()}")
    tz = rules.timezone
    if as_json:
        click.echo(json.dumps([hold_dict(h, tz) for h in holds], ensure_ascii=False))
        return
    if not holds:
        click.echo("no virtual holds" + ("" if days else " pending"))
        return
    click.echo(
        f"{'tenant':<16} {'state':<13} {'number':<10} {'accepted':<12} {'tries':>5}  "
        f"{'next try':<12} call"
    )
    for hold in holds:
        click.echo(hold_line(hold, tz))
