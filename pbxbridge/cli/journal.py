"""``pbxbridge report`` and ``purge``: the journal's service-level reports and retention."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pbxbridge.config.compile import state_path
from pbxbridge.core import servicelevel
from pbxbridge.core.rules import Rules

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pbxbridge.config.schema import RulesFile
    from pbxbridge.core.virtual_hold import VirtualHold
    from pbxbridge.journal.report import Granularity, RowSource
    from pbxbridge.storage.virtual_holds import VirtualHoldStore
from pbxbridge.cli import base
from pbxbridge.cli.base import CONFIG_ENV, cli


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
    holds: Sequence[VirtualHold] = (),
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
        holds: The virtual holds of the period's calls: a call answered by
            callback counts as answered (see :mod:`pbxbridge.journal.virtual_holds`),
            ``csv`` and ``invoice`` have ``virtual_hold_*`` columns (each
            bucket's holds), and ``table`` and ``json`` show the virtual holds
            apart when any tenant offers them or there are any.

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
    from pbxbridge.journal.virtual_holds import (
        answered_by_callback,
        as_json,
        virtual_hold_figures,
    )
    from pbxbridge.journal.virtual_holds import format_table as holds_table

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    base.check_tenant(rules, tenant)
    if fmt == "invoice" and tenant is None:
        raise ValueError("the invoice format is per tenant: give a tenant")
    if threshold_s < 0 or short_abandon_s < 0:
        raise ValueError("thresholds must not be negative")
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    tz = rules.timezone
    by_call = {(h.node, h.call_id): h for h in holds if tenant is None or h.tenant == tenant}
    report = build_report(
        answered_by_callback(report_rows(journal, start, end, tz, tenant), by_call),
        start=start,
        end=end,
        tz=tz,
        by=by,
        tenant=tenant,
        now=now,
        threshold_s=threshold_s,
        short_abandon_s=short_abandon_s,
        tenants=rules.tenants,
        holds=by_call.values(),
    )
    if fmt == "csv":
        return format_csv(report, bom=True)
    if fmt == "invoice":
        assert tenant is not None
        return monthly_invoice_csv(report, tenant, bom=True)
    offering = [t for t, spec in rules.tenants.items() if spec.virtual_hold.enabled]
    shown = by_call or (offering if tenant is None else tenant in offering)
    if not shown:
        return format_json(report) if fmt == "json" else format_table(report)
    per, total = virtual_hold_figures(by_call.values(), [tenant] if tenant else offering)
    if fmt == "json":
        data = json.loads(format_json(report))
        data["virtual_holds"] = as_json(per, total)
        return json.dumps(data, ensure_ascii=False)
    return format_table(report).rstrip("\n") + "\n\n" + holds_table(per, total)


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

    rules, model = base.load(config)
    if month is not None:
        if first or last:
            base.fail("give --month or --from/--to, not both")
        start, end = month_range(month.year, month.month)
    elif first is not None and last is not None:
        start, end = first.date(), last.date()
    else:
        base.fail("give --from and --to, or --month")
    journal = base.open_journal(config, model)
    try:
        holds = _virtual_holds(config, model, rules, start, end)
        text = run_report_cli(
            journal,
            rules,
            start=start,
            end=end,
            by=by,  # type: ignore[arg-type]
            tenant=tenant,
            fmt=fmt,
            now=base.now(),
            threshold_s=threshold,
            short_abandon_s=short_abandon,
            holds=holds,
        )
    except ValueError as exc:
        base.fail(str(exc))
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

    _, model = base.load(config)
    days = days if days is not None else Settings.from_env().retention_days
    journal = base.open_journal(config, model)
    try:
        # The daemon's spool directory.
        spool = spool_dir(state_path(model, config))
        with _open_holds(config, model) as holds:
            count = purge_older_than(
                journal, days=days, now=base.now(), spool_dir=spool, holds=holds
            )
    except ValueError as exc:
        base.fail(str(exc))
    finally:
        journal.close()
    click.echo(f"removed personal data from {count} call(s) older than {days} days")


def _open_holds(config: str, model: RulesFile) -> VirtualHoldStore:
    """The virtual-hold store the daemon uses (PostgreSQL with a URL, else the state file)."""
    from pbxbridge.storage.virtual_holds import open_virtual_hold_store

    return open_virtual_hold_store(base.database_url(), state_path(model, config))


def _virtual_holds(
    config: str, model: RulesFile, rules: Rules, start: date, end: date
) -> list[VirtualHold]:
    """The virtual holds of the calls that arrived in the period (local dates)."""
    from pbxbridge.journal.report import period_range

    first, after = period_range(start, end, rules.timezone)
    with _open_holds(config, model) as store:
        return store.between(first, after)
