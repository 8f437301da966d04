"""``pbxbridge replay``: what a rules change would have done to the calls of a period.

Exit status 0 when no call would be routed differently, 1 when some would, 2
on an error (invalid rules, unreadable journal, bad dates), so that a
deployment can be gated on it.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta, tzinfo
from typing import Final, NoReturn

import click
import psycopg

from pbxbridge.cli import base
from pbxbridge.cli.base import CONFIG_ENV, cli
from pbxbridge.config import ConfigError, load_rules
from pbxbridge.config.compile import state_path
from pbxbridge.config.schema import RulesFile
from pbxbridge.core.calendar import format_local
from pbxbridge.core.numbers import printable
from pbxbridge.core.replay import ChangedCall, ReplayReport, Routed
from pbxbridge.core.rules import Rules
from pbxbridge.journal.backend import JOURNAL_FILE
from pbxbridge.journal.render import csv_text, spreadsheet_cell
from pbxbridge.journal.replay import override_timeline, replay_journal
from pbxbridge.runtime.settings import SettingsError, database_url_from_env
from pbxbridge.storage.overrides import open_override_store
from pbxbridge.storage.postgres import redact_database_url

ERROR: Final = 2
"""Exit status on an error (1 means "something changes")."""

CSV_COLUMNS: Final = (
    "arrived_at",
    "node",
    "call_id",
    "tenant",
    "change",
    "did",
    "caller",
    "menu_digit",
    *(f"before_{name}" for name in ("tenant", "action", "queue", "priority", "closed")),
    *(f"after_{name}" for name in ("tenant", "action", "queue", "priority", "closed")),
)
"""Columns of ``--format csv``, one row per changed call (stable: append only)."""


def _error(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(ERROR)


def _rules(path: str) -> tuple[Rules, RulesFile]:
    try:
        return load_rules(path)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        _error(f"{path}: {len(exc.issues)} error(s); rules not loaded")
    except OSError as exc:
        _error(f"{path}: {exc.strerror or exc}")


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        _error(f"{option} {text!r}: expected a date, e.g. 2026-11-01")


@cli.command()
@click.option(
    "-c",
    "--config",
    required=True,
    envvar=CONFIG_ENV,
    type=click.Path(dir_okay=False),
    help="The rules the daemon runs (the journal and overrides are found from it).",
)
@click.option(
    "--rules", "new_path", required=True, type=click.Path(dir_okay=False), help="The new rules."
)
@click.option(
    "--against",
    "current_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="The rules to compare with; default: --config.",
)
@click.option("--from", "from_text", required=True, help="First day (local), e.g. 2026-11-01.")
@click.option("--to", "to_text", required=True, help="Last day (local, inclusive).")
@click.option("--tenant", default=None, help="Only changes to or from this tenant.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--no-overrides", is_flag=True, help="Ignore the manual overrides' history.")
def replay(
    config: str,
    new_path: str,
    current_path: str | None,
    from_text: str,
    to_text: str,
    tenant: str | None,
    fmt: str,
    no_overrides: bool,
) -> None:
    """Route the journal's calls of a period by new rules; list what would change.

    Exit status: 0 nothing changes, 1 something does, 2 error.
    """
    current, model = _rules(current_path or config)
    if current_path is not None:
        model = _rules(config)[1]  # the journal and overrides belong to --config
    new, _ = _rules(new_path)
    first, last = _day(from_text, "--from"), _day(to_text, "--to")
    if last < first:
        _error("--to is before --from")
    tz = current.timezone
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    end_day = last + timedelta(days=1)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz)
    if tenant is not None and tenant not in current.tenants and tenant not in new.tenants:
        _error(f"--tenant {tenant!r}: no such tenant in either rules file")
    report = _run(config, model, current, new, start, end, tenant, no_overrides)
    if fmt == "json":
        click.echo(json.dumps(report_json(report, start, end), ensure_ascii=False, indent=2))
    elif fmt == "csv":
        click.echo(report_csv(report), nl=False)
    else:
        label = f"{current_path or config} → {new_path}"
        click.echo(report_table(report, start, end, label, tz_name=str(tz)))
    sys.exit(1 if report.changed else 0)


def _run(
    config: str,
    model: RulesFile,
    current: Rules,
    new: Rules,
    start: datetime,
    end: datetime,
    tenant: str | None,
    no_overrides: bool,
) -> ReplayReport:
    try:
        url = database_url_from_env()
    except SettingsError as exc:
        _error(str(exc))
    state = state_path(model, config)
    journal_file = state.with_name(JOURNAL_FILE)
    if not url and not journal_file.exists():
        # Opening would create an empty one: say where the journal was looked for.
        _error(f"no journal at {journal_file} (is the daemon's state elsewhere?)")
    try:
        timeline = None
        # A node that never stored an override has no state file: don't create one.
        if not no_overrides and (url or state.exists()):
            with open_override_store(url, state) as store:
                timeline = override_timeline(store)
        with base.open_journal(config, model) as journal:
            return replay_journal(
                journal, current, new, start, end, overrides=timeline, tenant=tenant
            )
    except psycopg.Error as exc:
        _error(f"database: {redact_database_url(str(exc), url).strip()}")
    except (OSError, ValueError) as exc:
        _error(f"journal: {exc}")


# ------------------------------------------------------------------ output


def report_table(
    report: ReplayReport, start: datetime, end: datetime, label: str, *, tz_name: str
) -> str:
    """Human-readable: totals, each group with samples, then every changed call."""
    tz = start.tzinfo
    out = [
        f"replay {label}",
        f"period {format_local(start)} – {format_local(end.astimezone(tz))} ({tz_name})",
        f"{report.calls} calls, {report.replayed} replayed, {len(report.changed)} would change, "
        f"{sum(report.not_replayable.values())} not replayable",
    ]
    if report.not_replayable:
        per = ", ".join(f"{t or '-'} {n}" for t, n in sorted(report.not_replayable.items()))
        out.append(f"  not replayable (115 calls whose caller retention removed): {per}")
    for group in report.groups:
        out += [
            "",
            f"{group.tenant or '-'}: {group.kind} — {group.count} call(s)",
            f"  before: {group.before.text()}",
            f"  after:  {group.after.text()}",
        ]
        for sample in group.samples:
            call = sample.call
            out.append(f"  e.g. {_call_text(call, tz)}")
            out += [f"    before {i}. {r}" for i, r in enumerate(sample.reasons_before, 1)]
            out += [f"    after  {i}. {r}" for i, r in enumerate(sample.reasons_after, 1)]
    if report.changed:
        out += ["", "changed calls:"]
        out += [
            f"  {_call_text(c, tz)}: {c.before.text()} → {c.after.text()}" for c in report.changed
        ]
    else:
        out += ["", "no call would be routed differently"]
    return "\n".join(out)


def _call_text(call: ChangedCall, tz: tzinfo | None) -> str:
    local = call.arrived_at.astimezone(tz)
    digit = f", pressed {printable(call.menu_digit, 2)!r}" if call.menu_digit is not None else ""
    return (
        f"{format_local(local)} {printable(call.did)} from {call.caller}{digit}"
        f" [{printable(call.node)}/{printable(call.call_id, 64)}]"
    )


def _routed(prefix: str, routed: Routed) -> dict[str, object]:
    return {f"{prefix}_{k}": v for k, v in routed.as_dict().items()}


def report_csv(report: ReplayReport) -> str:
    """One row per changed call (:data:`CSV_COLUMNS`), ``;``-separated for German Excel."""

    def row(c: ChangedCall) -> list[str]:
        cells: dict[str, object] = {
            "arrived_at": c.arrived_at.isoformat(),
            "node": c.node,
            "call_id": c.call_id,
            "tenant": c.tenant,
            "change": c.kind,
            "did": printable(c.did),
            "caller": c.caller,
            "menu_digit": c.menu_digit,
            **_routed("before", c.before),
            **_routed("after", c.after),
        }
        return [spreadsheet_cell(cells[name]) for name in CSV_COLUMNS]

    return csv_text(CSV_COLUMNS, (row(c) for c in report.changed))


def report_json(report: ReplayReport, start: datetime, end: datetime) -> dict[str, object]:
    """Everything as one JSON object (callers shortened, as everywhere in reports)."""

    def call(c: ChangedCall) -> dict[str, object]:
        return {
            "arrived_at": c.arrived_at.isoformat(),
            "node": c.node,
            "call_id": c.call_id,
            "tenant": c.tenant,
            "change": c.kind,
            "did": c.did,
            "caller": c.caller,
            "menu_digit": c.menu_digit,
            "before": c.before.as_dict(),
            "after": c.after.as_dict(),
        }

    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "summary": report.summary(),
        "not_replayable": dict(sorted(report.not_replayable.items())),
        "groups": [
            {
                "tenant": g.tenant,
                "change": g.kind,
                "count": g.count,
                "before": g.before.as_dict(),
                "after": g.after.as_dict(),
                "samples": [
                    {
                        **call(s.call),
                        "reasons_before": list(s.reasons_before),
                        "reasons_after": list(s.reasons_after),
                    }
                    for s in g.samples
                ],
            }
            for g in report.groups
        ],
        "changed": [call(c) for c in report.changed],
    }


__all__ = ["CSV_COLUMNS", "replay", "report_csv", "report_json", "report_table"]
