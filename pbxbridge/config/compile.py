"""Turn a validated :class:`RulesFile` into compiled :class:`Rules`, checking meaning.

pydantic checked shapes and types. Here we check what needs the whole file:
references between sections, phone numbers, intervals, duplicates. Every
problem is collected with its key path, none stops the others from being found.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
import phonenumbers

from pbxbridge.config.ical import Closure
from pbxbridge.config.schema import (
    CalendarConfig,
    ClosedConfig,
    RulesFile,
    TenantConfig,
    VirtualHoldConfig,
)
from pbxbridge.core.calendar import (
    WEEKDAYS,
    Calendar,
    CalendarSyntaxError,
    Interval,
    MonthDay,
    is_yearly,
    parse_date,
    parse_date_range,
    parse_days,
    parse_interval,
    parse_yearly_range,
)
from pbxbridge.core.models import ClosedHandling, ClosedThen, Menu, QueueTarget, Reject
from pbxbridge.core.numbers import clean_digits, normalize
from pbxbridge.core.rules import (
    PrefixTable,
    Rules,
    Service115,
    Tenant,
    UnknownDid,
    UrlTemplate,
)
from pbxbridge.core.virtual_hold import OFF, VirtualHoldPolicy, VirtualHoldSounds

Loc = tuple[str | int, ...]
Problems = list[tuple[Loc, str]]

_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_MAX_RANGE_DAYS = 366
_MAX_CLOSED_DAYS = 10 * 366
"""Extra closed days per calendar: ten years is plenty, and it bounds the work."""


def compile_rules(
    model: RulesFile,
    *,
    source: str = "",
    digest: str = "",
    present: Mapping[str, frozenset[str]] | None = None,
    ics: Mapping[str, tuple[Closure, ...]] | None = None,
) -> tuple[Rules | None, Problems]:
    """Check a validated rules file and compile it.

    Args:
        model: The validated file (or the valid part of an invalid one).
        source: Where it came from (for traces).
        digest: Hash of its text.
        present: Keys per section (``tenants``, ``calendars``, ``queues``) that
            exist in the file but failed validation: references to them are not
            reported again as unknown.
        ics: Closures read from each calendar's ``ics:`` file (by calendar key).

    Returns:
        ``(rules, problems)``; ``rules`` is ``None`` when there are problems.
    """
    problems: Problems = []
    refs = _Refs(problems, present or {})
    tz = _timezone(model.timezone, problems)
    region = model.region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        problems.append((("region",), f"unknown region {model.region!r} (e.g. DE)"))
        region = "DE"

    for section in ("calendars", "queues", "tenants"):
        for key in getattr(model, section):
            if not _KEY_RE.match(key):
                problems.append(
                    (
                        (section, key),
                        f"invalid key {key!r}: use 1-32 lowercase letters, digits, - or _,"
                        " starting with a letter (it becomes a tag in Asterisk)",
                    )
                )

    calendars = {
        key: _calendar(key, cfg, ("calendars", key), problems, (ics or {}).get(key, ()))
        for key, cfg in model.calendars.items()
    }
    queues = {
        key: QueueTarget(
            key=key,
            context=cfg.context,
            queue=cfg.queue or key,
            timeout=cfg.timeout,
        )
        for key, cfg in model.queues.items()
    }

    tenants: dict[str, Tenant] = {}
    exact: dict[str, tuple[str, str]] = {}
    blocks: dict[str, tuple[str, str]] = {}
    claimed: dict[str, Loc] = {}
    for key, cfg in model.tenants.items():
        loc: Loc = ("tenants", key)
        tenant = _tenant(key, cfg, loc, calendars, queues, refs, region)
        if tenant is not None:
            tenants[key] = tenant
        for i, text in enumerate(cfg.dids):
            _claim_did(text, key, (*loc, "dids", i), region, exact, blocks, claimed, problems)

    service = None
    if model.service_115 is not None:
        service = _service_115(model, region, claimed, refs)

    unknown = UnknownDid(
        tenant=model.unknown_did.tenant,
        reject=Reject(announce=model.unknown_did.reject.announce or "")
        if model.unknown_did.reject is not None
        else None,
    )
    if unknown.tenant is not None:
        refs.check(unknown.tenant, model.tenants, ("unknown_did", "tenant"), "tenant")

    if problems:
        return None, problems
    assert tz is not None
    rules = Rules(
        timezone=tz,
        region=region,
        tenants=tenants,
        exact_dids=exact,
        prefix_dids=PrefixTable.build(blocks),
        service_115=service,
        unknown_did=unknown,
        queues=queues,
        calendars=calendars,
        source=source,
        digest=digest,
    )
    return rules, problems


INSTALLED_STATE_DIR = Path("/var/lib/pbxbridge")
"""The systemd unit's ``StateDirectory``; used by the CLI outside systemd too."""


def state_path(model: RulesFile, rules_file: str | Path) -> Path:
    """Where the SQLite state file lives for these rules.

    The daemon and the operator's CLI must agree on this file, or overrides set
    from a shell would never reach the daemon. Order: ``state.path`` from the
    rules (relative to the rules file's folder); ``$STATE_DIRECTORY`` (set by
    systemd's ``StateDirectory=``); ``/var/lib/pbxbridge`` when it exists (an
    installed system, CLI run from a shell); else ``var/`` beside the rules
    file (a checkout).

    Args:
        model: The validated rules.
        rules_file: Path of the rules file.

    Returns:
        The state database path.
    """
    base = Path(rules_file).resolve().parent
    if model.state.path:
        return (base / model.state.path).resolve()
    state_dir = os.environ.get("STATE_DIRECTORY")
    if state_dir:
        # systemd may pass several colon-separated directories; ours is the first.
        return Path(state_dir.split(":")[0]) / "pbxbridge.sqlite"
    if INSTALLED_STATE_DIR.is_dir():
        return INSTALLED_STATE_DIR / "pbxbridge.sqlite"
    return base / "var" / "pbxbridge.sqlite"


def _timezone(name: str, problems: Problems) -> ZoneInfo | None:
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append((("timezone",), f"unknown time zone {name!r} (e.g. Europe/Berlin)"))
        return None


def _calendar(
    key: str,
    cfg: CalendarConfig,
    loc: Loc,
    problems: Problems,
    ics: tuple[Closure, ...] = (),
) -> Calendar:
    weekly: list[list[Interval]] = [[] for _ in WEEKDAYS]
    for spec, intervals in cfg.hours.items():
        try:
            days = parse_days(spec)
        except CalendarSyntaxError as exc:
            problems.append(((*loc, "hours", spec), str(exc)))
            continue
        for i, text in enumerate(intervals):
            try:
                interval = parse_interval(text, spec)
            except CalendarSyntaxError as exc:
                problems.append(((*loc, "hours", spec, i), str(exc)))
                continue
            for weekday in days:
                clash = next((x for x in weekly[weekday] if x.overlaps(interval)), None)
                if clash is not None:
                    problems.append(
                        (
                            (*loc, "hours", spec, i),
                            f"{interval.text} overlaps {clash.label} {clash.text} "
                            f"on {WEEKDAYS[weekday]}",
                        )
                    )
                    break
            else:
                for weekday in days:
                    weekly[weekday].append(interval)

    closed: dict[date, str] = {}
    yearly_closed: dict[MonthDay, str] = {}
    seen_ranges: set[str] = set()
    for i, text in enumerate(cfg.closed):
        if text in seen_ranges:
            continue  # repeated entries (or YAML aliases) add nothing
        seen_ranges.add(text)
        if len(closed) > _MAX_CLOSED_DAYS:
            problems.append(((*loc, "closed", i), f"more than {_MAX_CLOSED_DAYS} closed days"))
            break
        try:
            if is_yearly(text):
                for month_day in parse_yearly_range(text):
                    yearly_closed.setdefault(month_day, f"yearly closed date {text.strip()}")
                continue
            first, last = parse_date_range(text)
        except CalendarSyntaxError as exc:
            problems.append(((*loc, "closed", i), str(exc)))
            continue
        if (last - first).days >= _MAX_RANGE_DAYS:
            problems.append(((*loc, "closed", i), f"range {text!r} is longer than a year"))
            continue
        day = first
        while day <= last:
            closed[day] = f"extra closed date {text}"
            day += timedelta(days=1)

    special: dict[date, tuple[Interval, ...]] = {}
    yearly_open: dict[MonthDay, tuple[Interval, ...]] = {}
    for text, intervals in cfg.open.items():
        yearly = is_yearly(text)
        try:
            month_days = parse_yearly_range(text) if yearly else ()
            dated = None if yearly else parse_date(text)
        except CalendarSyntaxError as exc:
            problems.append(((*loc, "open", text), str(exc)))
            continue
        label = (
            f"yearly special opening {text.strip()}"
            if dated is None
            else f"special opening {dated.isoformat()}"
        )
        parsed: list[Interval] = []
        for i, itext in enumerate(intervals):
            try:
                interval = parse_interval(itext, label)
            except CalendarSyntaxError as exc:
                problems.append(((*loc, "open", text, i), str(exc)))
                continue
            clash = next((x for x in parsed if x.overlaps(interval)), None)
            if clash is not None:
                problems.append(((*loc, "open", text, i), f"{interval.text} overlaps {clash.text}"))
                continue
            parsed.append(interval)
        ordered = tuple(sorted(parsed, key=lambda x: x.start))
        if yearly:
            for month_day in month_days:
                if month_day in yearly_closed:
                    problems.append(
                        (
                            (*loc, "open", text),
                            f"{month_day[0]:02d}-{month_day[1]:02d} is also closed every year "
                            f"({yearly_closed[month_day]}); pick one",
                        )
                    )
                    break
                yearly_open[month_day] = ordered
            continue
        assert dated is not None
        if dated in closed:
            problems.append(((*loc, "open", text), f"{text} is also listed under closed; pick one"))
        special[dated] = ordered

    # Closures from the ics: file count as dated closed entries; the YAML's own
    # closed entries keep their reason, its special openings still win. Their
    # reasons name the file (as the YAML names it) and the date, never the
    # event's title: reasons go to the journal and the log, and an imported
    # calendar's titles are free text ("Urlaub Frau M."), unlike the YAML's.
    closed_hours: dict[date, list[Interval]] = {}
    hour_reasons: dict[date, str] = {}
    for c in ics:
        where = f"from {cfg.ics} on {c.day.isoformat()}"
        if c.all_day:
            closed.setdefault(c.day, f"closure {where}")
        else:
            closed_hours.setdefault(c.day, []).append(Interval(c.start, c.end, where))
            hour_reasons.setdefault(c.day, f"closure {where}")

    country = subdivision = ""
    if cfg.holidays is not None:
        country = cfg.holidays.country.upper()
        subdivision = (cfg.holidays.subdivision or "").upper()
        supported = holidays_lib.list_supported_countries()
        if country not in supported:
            problems.append(
                ((*loc, "holidays", "country"), f"no holiday data for country {country!r}")
            )
        elif subdivision and subdivision not in {s.upper() for s in supported[country]}:
            problems.append(
                (
                    (*loc, "holidays", "subdivision"),
                    f"unknown subdivision {subdivision!r} of {country}; known: "
                    + ", ".join(s for s in supported[country] if s.isupper()),
                )
            )
    return Calendar(
        name=key,
        weekly=tuple(tuple(sorted(d, key=lambda x: x.start)) for d in weekly),
        closed_dates=closed,
        special_open=special,
        yearly_closed=yearly_closed,
        yearly_open=yearly_open,
        closed_hours={d: (tuple(cut), hour_reasons[d]) for d, cut in closed_hours.items()},
        holiday_country=country,
        holiday_subdivision=subdivision,
    )


class _Refs:
    """Checks references between sections, collecting problems."""

    def __init__(self, problems: Problems, present: Mapping[str, frozenset[str]]) -> None:
        self.problems = problems
        self.present = present

    def check(self, value: str, table: Mapping[str, object], loc: Loc, what: str) -> bool:
        """Whether ``value`` names an entry of ``table``; record a problem if not.

        A reference to an entry that exists but is itself invalid returns False
        without a second problem: the entry's own errors say what to fix.
        """
        if value in table:
            return True
        section = {"tenant": "tenants", "calendar": "calendars", "queue": "queues"}[what]
        if value in self.present.get(section, frozenset()):
            return False
        known = ", ".join(sorted(table)) or "none"
        self.problems.append((loc, f"unknown {what} {value!r} (known: {known})"))
        return False


def _tenant(
    key: str,
    cfg: TenantConfig,
    loc: Loc,
    calendars: Mapping[str, Calendar],
    queues: Mapping[str, QueueTarget],
    refs: _Refs,
    region: str,
) -> Tenant | None:
    problems = refs.problems
    ok = refs.check(cfg.calendar, calendars, (*loc, "calendar"), "calendar")
    ok &= refs.check(cfg.open.queue, queues, (*loc, "open", "queue"), "queue")
    closed = _closed(cfg.closed, (*loc, "closed"), queues, refs, region)
    screen_pop = None
    if cfg.screen_pop is not None:
        url = cfg.screen_pop.url
        try:
            if not url.startswith(("https://", "http://")):
                raise ValueError("the URL must start with https:// (or http://)")
            screen_pop = UrlTemplate.parse(url)
        except ValueError as exc:
            problems.append(((*loc, "screen_pop", "url"), str(exc)))
            ok = False
    if not ok or closed is None:
        return None
    base = queues[cfg.open.queue]
    return Tenant(
        id=key,
        name=cfg.name,
        greeting=cfg.greeting,
        calendar=calendars[cfg.calendar],
        open=QueueTarget(
            key=base.key,
            context=base.context,
            queue=base.queue,
            priority=cfg.open.priority,
            whisper=cfg.open.whisper or "",
            callerid_prefix=cfg.open.callerid_prefix.strip(),
            timeout=base.timeout,
        ),
        closed=closed,
        screen_pop=screen_pop,
        callback_working_days=cfg.callback.working_days,
        virtual_hold=_virtual_hold(cfg.virtual_hold),
    )


def _virtual_hold(cfg: VirtualHoldConfig | None) -> VirtualHoldPolicy:
    """The tenant's virtual-hold policy; defaults are the core's (one copy)."""
    if cfg is None:
        return OFF
    sounds = {k: v for k, v in cfg.sounds.model_dump().items() if v is not None}
    estimate, waited = cfg.offer_when_estimate_over, cfg.offer_after_waiting
    if estimate is None and waited is None:
        estimate = OFF.offer_after_estimate_s
    return VirtualHoldPolicy(
        enabled=cfg.enabled,
        offer_after_estimate_s=estimate,
        offer_after_waited_s=waited,
        offer_when=cfg.offer_when,
        repeat_s=cfg.repeat_every,
        digit=cfg.digit,
        sounds=VirtualHoldSounds(**sounds),
        retry_delay_s=cfg.retry_after,
        max_tries=cfg.max_tries,
        answer_timeout_s=cfg.answer_timeout,
        entry_attempts=cfg.entry_attempts,
        allow_international=cfg.allow_international,
        repeat_caller_priority=cfg.repeat_caller_priority,
        outbound_context=cfg.outbound_context,
    )


def _closed(
    cfg: ClosedConfig, loc: Loc, queues: Mapping[str, QueueTarget], refs: _Refs, region: str
) -> ClosedHandling | None:
    problems = refs.problems
    then = ClosedThen(cfg.then)
    target = ""
    queue = None
    if then is ClosedThen.VOICEMAIL:
        target = cfg.mailbox or ""
    elif then is ClosedThen.FORWARD:
        number = normalize(cfg.number or "", region)
        if number.e164 is None:
            problems.append(((*loc, "number"), f"cannot parse number {cfg.number!r}"))
            return None
        target = number.e164
    elif then is ClosedThen.QUEUE:
        if not refs.check(cfg.queue or "", queues, (*loc, "queue"), "queue"):
            return None
        queue = queues[cfg.queue or ""]
        target = queue.queue
    return ClosedHandling(then=then, announce=cfg.announce or "", target=target, queue=queue)


def _prefix(text: str, region_cc: str) -> str | None:
    """E.164 prefix of ``+49 4407``, ``04407`` or ``0049 4407``; ``None`` if unusable."""
    digits = clean_digits(text)
    if not digits or digits == "+":
        return None
    if digits.startswith("+"):
        body = digits[1:]
    elif digits.startswith("00"):
        body = digits[2:]
    elif digits.startswith("0"):
        body = region_cc + digits[1:]
    else:
        return None
    return "+" + body if body.isdigit() and 2 <= len(body) <= 15 else None


def _claim_did(
    text: str,
    tenant: str,
    loc: Loc,
    region: str,
    exact: dict[str, tuple[str, str]],
    blocks: dict[str, tuple[str, str]],
    claimed: dict[str, Loc],
    problems: Problems,
) -> None:
    stripped = text.strip()
    if stripped.endswith("*"):
        prefix = _prefix(stripped[:-1], str(phonenumbers.country_code_for_region(region)))
        if prefix is None:
            problems.append((loc, f'cannot parse number block {text!r} (e.g. "+49 4407 73*")'))
            return
        key, table, kind = "block " + prefix, blocks, prefix
    else:
        number = normalize(stripped, region)
        if number.e164 is None:
            problems.append((loc, f"cannot parse number {text!r}"))
            return
        key, table, kind = number.e164, exact, number.e164
    if key in claimed:
        other = claimed[key]
        owner = f"tenant {other[1]}" if other[0] == "tenants" else "service_115"
        problems.append((loc, f"number {kind} is also claimed by {owner} ({_dotted(other)})"))
        return
    claimed[key] = loc
    table[kind] = (tenant, text)


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


def _service_115(
    model: RulesFile,
    region: str,
    claimed: dict[str, Loc],
    refs: _Refs,
) -> Service115 | None:
    problems = refs.problems
    cfg = model.service_115
    assert cfg is not None
    loc: Loc = ("service_115",)
    dids: set[str] = set()
    for i, text in enumerate(cfg.dids):
        number = normalize(text, region)
        if number.e164 is None:
            problems.append(((*loc, "dids", i), f"cannot parse number {text!r}"))
            continue
        if number.e164 in claimed:
            other = claimed[number.e164]
            owner = f"tenant {other[1]}" if other[0] == "tenants" else "service_115"
            problems.append(
                (
                    (*loc, "dids", i),
                    f"number {number.e164} is also claimed by {owner} ({_dotted(other)})",
                )
            )
            continue
        claimed[number.e164] = (*loc, "dids", i)
        dids.add(number.e164)
    cc = str(phonenumbers.country_code_for_region(region))
    areas: dict[str, tuple[str, str]] = {}
    for text, tenant in cfg.by_area_code.items():
        aloc = (*loc, "by_area_code", text)
        prefix = _prefix(text, cc)
        if prefix is None:
            problems.append((aloc, f"cannot parse area code {text!r} (write +49 4407 or 04407)"))
        elif prefix in areas:
            problems.append((aloc, f"area code {prefix} is listed twice"))
        elif refs.check(tenant, model.tenants, aloc, "tenant"):
            areas[prefix] = (tenant, text)
    otherwise_tenant = cfg.otherwise.tenant
    menu = None
    if otherwise_tenant is not None:
        refs.check(otherwise_tenant, model.tenants, (*loc, "otherwise", "tenant"), "tenant")
    elif cfg.otherwise.menu is not None:
        mcfg = cfg.otherwise.menu
        mloc: Loc = (*loc, "otherwise", "menu")
        for digit, tenant in mcfg.options.items():
            if digit not in set("0123456789*#") or len(digit) != 1:
                problems.append(((*mloc, "options", digit), f"{digit!r} is not a single key 0-9*#"))
            refs.check(tenant, model.tenants, (*mloc, "options", digit), "tenant")
        refs.check(mcfg.default, model.tenants, (*mloc, "default"), "tenant")
        menu = Menu(
            prompt=mcfg.prompt,
            options=dict(mcfg.options),
            default=mcfg.default,
            timeout=mcfg.timeout,
        )
    return Service115(
        dids=frozenset(dids),
        by_area_code=PrefixTable.build(areas),
        otherwise_tenant=otherwise_tenant,
        otherwise_menu=menu,
    )
