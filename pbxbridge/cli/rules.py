"""``pbxbridge check``, ``explain``, ``calendar``, ``schema``: the rules as operators read them."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import TYPE_CHECKING

import click

from pbxbridge.config.compile import state_path
from pbxbridge.config.schema import RulesFile
from pbxbridge.core import Call, Decision, route
from pbxbridge.core.calendar import WEEKDAYS
from pbxbridge.core.rules import Rules

if TYPE_CHECKING:
    pass
from pbxbridge.cli import base
from pbxbridge.cli.base import CONFIG_ENV, cli


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False), envvar=CONFIG_ENV)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when the file is valid.")
@click.option("--ari", "ari_url", default=None, help="Check the sounds against this Asterisk.")
@click.option("--language", "languages", multiple=True, help="With --ari: a language to check.")
def check(config: str, quiet: bool, ari_url: str | None, languages: tuple[str, ...]) -> None:
    """Validate a rules file; list every error as FILE:LINE: key.path: message.

    Valid but probably wrong entries (a closure on a public holiday, a special
    opening on a day that is open anyway, a 115 area code of another place) are
    listed as FILE:LINE: key.path: warning: message on stderr; they do not
    change the exit status. With --ari, each sound the rules name that this
    Asterisk lacks is an error (FILE:LINE too).
    """
    from pathlib import Path

    from pbxbridge.config.lint import format_warning, lint_rules

    rules, model = base.load(config)
    today = base.now().astimezone(rules.timezone).date()
    warnings = lint_rules(Path(config).read_bytes(), config, rules, model, today=today)
    for warning in warnings:
        click.echo(format_warning(warning), err=True)
    if ari_url is not None:
        from pbxbridge.cli.sounds import check_sounds

        check_sounds(config, model, ari_url, languages)
    if not quiet:
        click.echo(
            f"{config}: OK ({len(rules.tenants)} tenants, {len(rules.exact_dids)} numbers, "
            f"{len(rules.prefix_dids.entries)} number blocks, "
            f"{len(rules.service_115.by_area_code.entries) if rules.service_115 else 0} "
            "115 area codes)" + (f", {len(warnings)} warning(s)" if warnings else "")
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
    rules, model = base.load(config)
    at, at_note = base.parse_at(at_text, rules)
    overrides = []
    # Without a database URL, a state file nobody has written yet holds no
    # overrides: don't create one just to look.
    if not no_overrides and (base.database_url() or state_path(model, config).exists()):
        with base.overrides(config, model) as store:
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
@click.option("--tenant", default=None, help="Tenant id (or a calendar id) to list or publish.")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First day.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last day (inclusive).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "ics"]),
    default=None,
    help="text (default), json, or ics: an iCalendar feed to subscribe to.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--import",
    "import_file",
    type=click.Path(dir_okay=False, exists=True),
    help="iCalendar file (.ics) whose events are closures: print them as a diff of the rules.",
)
@click.option("--calendar", "calendar_key", default=None, help="With --import: the calendar.")
@click.option("--write", is_flag=True, help="With --import: apply the diff to the rules file.")
def calendar(
    config: str,
    tenant: str | None,
    first: datetime | None,
    last: datetime | None,
    fmt: str | None,
    as_json: bool,
    import_file: str | None,
    calendar_key: str | None,
    write: bool,
) -> None:
    """List open and closed periods day by day, publish them as iCalendar, or import closures.

    List or publish: --tenant T --from DAY --to DAY [--format text|json|ics].

    Import: --import FILE.ics --calendar NAME [--from DAY --to DAY] [--write]; the
    closures the file implies are printed as a unified diff of the rules file.
    """
    if import_file is not None:
        if calendar_key is None:
            base.fail("--import needs --calendar NAME (the calendar to add the closures to)")
        _import(config, import_file, calendar_key, first, last, write)
        return
    if calendar_key is not None or write:
        base.fail("--calendar and --write go with --import FILE.ics")
    if tenant is None or first is None or last is None:
        base.fail("give --tenant, --from and --to (or --import FILE.ics --calendar NAME)")
    fmt = "json" if as_json else (fmt or "text")
    rules, _ = base.load(config)
    if tenant in rules.tenants:
        cal = rules.tenants[tenant].calendar
    elif tenant in rules.calendars:
        cal = rules.calendars[tenant]
    else:
        base.fail(
            f"unknown tenant or calendar {tenant!r} (known: {', '.join(sorted(rules.tenants))})"
        )
    if last < first:
        base.fail("--to is before --from")
    if (last - first).days > 731:
        base.fail("at most two years at a time")
    if fmt == "ics":
        from pbxbridge.config.feed import build_feed

        feed = build_feed(rules, tenant, first.date(), last.date(), stamp=base.now())
        click.echo(feed.decode("utf-8"), nl=False)
        return
    days: dict[date, list[tuple[str, bool, str]]] = {}
    for period in cal.periods(first.date(), last.date()):
        span = f"{_hhmm(period.start)}-{_hhmm(period.end)}"
        days.setdefault(period.day, []).append((span, period.is_open, period.why))
    if fmt == "json":
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


def _import(
    config: str,
    ics_file: str,
    calendar_key: str,
    first: datetime | None,
    last: datetime | None,
    write: bool,
) -> None:
    """Print (or apply) the entries an iCalendar file adds to a calendar, as a unified diff."""
    import difflib
    import os
    import tempfile
    from pathlib import Path

    from pbxbridge.config import ConfigError
    from pbxbridge.config.edit import apply_entries, plan_import
    from pbxbridge.config.ical import IcsError, closures, parse_ics, yearly_series
    from pbxbridge.config.loader import parse_rules

    rules, model = base.load(config)
    if calendar_key not in rules.calendars:
        base.fail(
            f"unknown calendar {calendar_key!r} (known: {', '.join(sorted(rules.calendars))})"
        )
    today = base.now().astimezone(rules.timezone).date()
    start = first.date() if first else today
    end = last.date() if last else date(today.year + 1, 12, 31)
    if end < start:
        base.fail("--to is before --from")
    try:
        cal = parse_ics(Path(ics_file).read_bytes())
        series = yearly_series(cal, since=start)
        found = closures(
            cal,
            tz=rules.timezone,
            first=start,
            last=end,
            skip_uids=frozenset(s.uid for s in series),
        )
    except IcsError as exc:
        base.fail(f"{ics_file}:{exc.line}: {exc.message}")
    except OSError as exc:
        base.fail(f"{ics_file}: {exc.strerror or exc}")
    plan = plan_import(rules.calendars[calendar_key], model.calendars[calendar_key], found, series)
    for note in plan.notes:
        click.echo(f"skipped: {note}", err=True)
    if not plan.entries:
        click.echo(f"{config}: nothing to add from {ics_file} ({start} to {end})", err=True)
        return
    path = Path(config)
    old = path.read_text(encoding="utf-8")
    try:
        new = apply_entries(old, calendar_key, plan.entries)
    except ValueError as exc:
        base.fail(f"{config}: {exc}")
    try:
        parse_rules(new, config, base_dir=path.resolve().parent)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        base.fail("the import would make the rules invalid; nothing written")
    diff = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=config,
        tofile=f"{config} (with {Path(ics_file).name})",
    )
    click.echo("".join(diff), nl=False)
    if write:
        # Replace atomically, so a reload never reads half a file.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.resolve().parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(new)
            os.chmod(tmp, path.stat().st_mode & 0o7777)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        click.echo(
            f"{config}: {len(plan.entries)} entries added to calendars.{calendar_key}; "
            "the daemon picks the change up on its next reload",
            err=True,
        )
    else:
        click.echo(
            f"{len(plan.entries)} entries for calendars.{calendar_key} "
            f"({start} to {end}); --write applies them",
            err=True,
        )


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the rules file (for editors)."""
    doc = RulesFile.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["$id"] = "https://pbxbridge.invalid/schema/routing-rules-v1.json"
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
