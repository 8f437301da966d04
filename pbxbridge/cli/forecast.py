"""``pbxbridge forecast``: next week's staffing per half hour from the call journal."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import click

from pbxbridge.cli import base
from pbxbridge.cli.base import CONFIG_ENV, cli
from pbxbridge.cli.staffing import target_option
from pbxbridge.core import erlang
from pbxbridge.core.rules import Rules
from pbxbridge.journal.report import RowSource

_WEEK_RE = re.compile(r"^\s*(\d{4})-?W(\d{1,2})\s*$", re.IGNORECASE)


def parse_week(text: str) -> tuple[int, int]:
    """An ISO week such as ``2026-W50``.

    Raises:
        ValueError: If malformed or the week does not exist in that year.
    """
    from pbxbridge.planning.forecast import week_days

    match = _WEEK_RE.match(text)
    if match is None:
        raise ValueError(f"--week {text!r}: expected an ISO week such as 2026-W50")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        week_days(year, week)
    except ValueError:
        raise ValueError(f"--week {text!r}: {year} has no week {week}") from None
    return year, week


def run_forecast_cli(
    journal: RowSource,
    rules: Rules,
    *,
    year: int,
    week: int,
    weeks: int = 8,
    tenant: str | None = None,
    fmt: str = "table",
    target_level: float = 0.8,
    threshold_s: float = 20.0,
    model: erlang.Model = "erlang-c",
    now: datetime,
) -> str:
    """Everything ``pbxbridge forecast`` does except parsing options and printing.

    Sums the history weeks' calls per half hour
    (:func:`~pbxbridge.journal.forecast.half_hours`, in the database),
    forecasts each tenant of the rules (or only ``tenant``) and the shared queue
    with the rules' time zone and calendars, and renders the result.

    Args:
        journal: The journal store.
        rules: The loaded rules.
        year: ISO year of the week to forecast.
        week: ISO week.
        weeks: History weeks.
        tenant: Only this tenant (no shared queue then).
        fmt: ``table``, ``csv`` or ``json``.
        target_level: Service-level target (0.8).
        threshold_s: Its threshold.
        model: ``erlang-c`` or ``erlang-a``.
        now: The current instant (the history ends before today).

    Returns:
        The text (CSV with a byte-order mark, for German Excel).

    Raises:
        ValueError: With a message for the user.
    """
    from pbxbridge.journal.forecast import half_hours
    from pbxbridge.planning.forecast import build_forecast, history_period
    from pbxbridge.planning.render import FORMATS, format_csv, format_json, format_table

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    base.check_tenant(rules, tenant)
    tz = rules.timezone
    today = now.astimezone(tz).date()
    first, last = history_period(year, week, weeks, today)
    wanted = [tenant] if tenant is not None else sorted(rules.tenants)
    forecast = build_forecast(
        half_hours(journal, first, last, tz, tenant),
        year=year,
        week=week,
        weeks=weeks,
        tz=tz,
        calendars={t: rules.tenants[t].calendar for t in wanted},
        target_level=target_level,
        threshold_s=threshold_s,
        model=model,
        today=today,
    )
    if fmt == "csv":
        return format_csv(forecast, bom=True)
    if fmt == "json":
        return format_json(forecast) + "\n"
    return format_table(forecast)


@cli.command()
@click.option("-c", "--config", required=True, envvar=CONFIG_ENV, type=click.Path(dir_okay=False))
@click.option("--week", "week_text", required=True, help="ISO week to forecast, e.g. 2026-W50.")
@click.option(
    "--weeks",
    type=click.IntRange(1, 104),
    default=8,
    show_default=True,
    help="History weeks to learn from.",
)
@click.option("--tenant", help="Only this tenant.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@target_option
@click.option(
    "--model",
    type=click.Choice(list(erlang.MODELS)),
    default="erlang-c",
    show_default=True,
    help="erlang-a uses the observed patience (Erlang C where none is known).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
def forecast(
    config: str,
    week_text: str,
    weeks: int,
    tenant: str | None,
    fmt: str,
    target_text: str,
    model: erlang.Model,
    output: str | None,
) -> None:
    """Expected calls, handle time, patience and agents per half hour of a week."""
    rules, rules_model = base.load(config)
    try:
        year, week = parse_week(week_text)
        level, threshold = erlang.parse_target(target_text)
    except ValueError as exc:
        base.fail(str(exc))
    journal = base.open_journal(config, rules_model)
    try:
        text = run_forecast_cli(
            journal,
            rules,
            year=year,
            week=week,
            weeks=weeks,
            tenant=tenant,
            fmt=fmt,
            target_level=level,
            threshold_s=threshold,
            model=model,
            now=base.now(),
        )
    except ValueError as exc:
        base.fail(str(exc))
    finally:
        journal.close()
    if output:
        # newline="": the CSV's CRLF line ends stay as they are.
        Path(output).write_text(text, encoding="utf-8", newline="")
        click.echo(f"written to {output}", err=True)
    else:
        click.echo(text, nl=False)
