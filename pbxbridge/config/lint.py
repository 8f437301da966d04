"""Warnings about rules that are valid but probably not what the operator meant.

``pbxbridge check`` prints them as ``FILE:LINE: key.path: warning: message``
and still exits 0: each can be intended, none stops the rules from loading.

- a closed entry (yearly or dated) whose every day is a public holiday anyway
  (for a yearly entry: in each of the next five years);
- a special opening on a day that is not closed (a weekday with its opening
  hours, no holiday, no closed entry): it replaces that day's hours, which is
  seldom the point; usually the date is a typo;
- a 115 area code mapped to a tenant whose place it is not: the local network's
  name from the ``phonenumbers`` geocoder is compared with the tenant's
  ``places`` (default: the words of its name), so ``+49 4221`` (Delmenhorst)
  mapped to Gemeinde Ganderkesee is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from types import ModuleType

import phonenumbers

from pbxbridge.config.loader import Issue, line_finder
from pbxbridge.config.schema import RulesFile, TenantConfig
from pbxbridge.core.calendar import (
    WEEKDAYS,
    Calendar,
    CalendarSyntaxError,
    is_yearly,
    parse_date,
    parse_date_range,
    parse_yearly_range,
)
from pbxbridge.core.rules import Rules

YEARS = 5
"""Yearly entries are judged over the load year and the four after it."""

_GENERIC = {
    "stadt",
    "gemeinde",
    "samtgemeinde",
    "landkreis",
    "kreis",
    "hansestadt",
    "flecken",
    "amt",
    "region",
    "verwaltung",
    "der",
    "die",
    "das",
}
"""Words of a tenant's name that name no place."""

Loc = tuple[str | int, ...]


def lint_rules(
    raw: bytes | str, name: str, rules: Rules, model: RulesFile, *, today: date
) -> list[Issue]:
    """Warnings about valid rules (see the module's docstring).

    Args:
        raw: The rules file's text (for the lines).
        name: The file name used in the warnings.
        rules: The compiled rules.
        model: The validated file.
        today: The local date (starts the years yearly entries are judged over).

    Returns:
        The warnings, in file order; each message without the ``warning:`` word.
    """
    line = line_finder(raw)
    found: list[tuple[Loc, str]] = []
    years = range(today.year, today.year + YEARS)
    for key, cfg in model.calendars.items():
        cal = rules.calendars[key]
        loc: Loc = ("calendars", key)
        for i, text in enumerate(cfg.closed):
            message = _closed_on_holidays(cal, text, years)
            if message:
                found.append(((*loc, "closed", i), message))
        for text in cfg.open:
            message = _opening_on_open_day(cal, text, years)
            if message:
                found.append(((*loc, "open", text), message))
    found.extend(_area_codes(model))
    issues = [Issue(name, line(loc), ".".join(str(p) for p in loc), msg) for loc, msg in found]
    return sorted(issues, key=lambda i: i.line)


def format_warning(issue: Issue) -> str:
    """``FILE:LINE: key.path: warning: message``."""
    where = f"{issue.path}: " if issue.path else ""
    return f"{issue.file}:{issue.line}: {where}warning: {issue.message}"


def _days_in(text: str, year: int) -> list[date]:
    """The dates a yearly entry covers in one year (02-29 only in leap years)."""
    days = []
    for month, day in parse_yearly_range(text):
        try:
            days.append(date(year, month, day))
        except ValueError:
            continue
    return days


def _closed_on_holidays(cal: Calendar, text: str, years: range) -> str:
    if not cal.holiday_country:
        return ""
    try:
        if is_yearly(text):
            per_year = [_days_in(text, y) for y in years]
            days = [d for ds in per_year for d in ds]
            when = f"every year from {years[0]} to {years[-1]}"
        else:
            first, last = parse_date_range(text)
            days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
            when = ""
    except CalendarSyntaxError:
        return ""
    names = [cal.holiday(d) for d in days]
    if not days or not all(names):
        return ""
    unique = ", ".join(dict.fromkeys(names))
    what = "a public holiday" if len(set(names)) == 1 else "public holidays"
    return (
        f"{text.strip()} is {what} {when + ' ' if when else ''}({unique}): "
        "closed anyway, the entry adds nothing"
    )


def _opening_on_open_day(cal: Calendar, text: str, years: range) -> str:
    try:
        if is_yearly(text):
            days = [d for y in years for d in _days_in(text, y)]
            when = f" in any year from {years[0]} to {years[-1]}"
        else:
            days = [parse_date(text)]
            when = ""
    except CalendarSyntaxError:
        return ""
    states = [cal.regular_state(d) for d in days]
    if not days or not all(intervals for intervals, _, _ in states):
        return ""
    intervals = states[0][0]
    hours = ", ".join(i.text for i in intervals)
    day = days[0]
    what = (
        f"{WEEKDAYS[day.weekday()]} {day.isoformat()} has its opening hours {hours}"
        if not when
        else f"{text.strip()} is not closed{when}"
    )
    return (
        f"special opening on a day that is not closed: {what}; the special opening "
        "replaces them (meant another day?)"
    )


def _geocoder() -> ModuleType | None:
    try:
        from phonenumbers import geocoder
    except ImportError:  # phonenumberslite ships no geocoder data
        return None
    return geocoder


def place_of(area_code: str, region: str = "DE") -> str:
    """The place an area code belongs to, as the ``phonenumbers`` geocoder names it.

    Args:
        area_code: ``+49 4221`` or ``04221``.
        region: Region for codes written without a country code.

    Returns:
        The place (``Delmenhorst``), or ``""`` when the geocoder does not know
        it or is not installed.
    """
    geocoder = _geocoder()
    if geocoder is None:
        return ""
    digits = re.sub(r"[^\d+]", "", area_code)
    for subscriber in ("123456", "1234567", "12345"):
        try:
            number = phonenumbers.parse(digits + subscriber, region)
        except phonenumbers.NumberParseException:
            return ""
        if phonenumbers.is_valid_number(number):
            return str(geocoder.description_for_number(number, "de"))
    return ""


def _places(tenant: TenantConfig) -> Sequence[str]:
    if tenant.places:
        return tenant.places
    words = re.split(r"[\s,/()]+", tenant.name)
    return [w for w in words if len(w) >= 3 and w.lower() not in _GENERIC]


def _matches(place: str, names: Sequence[str]) -> bool:
    """``Ganderkesee-Bookholzberg`` and ``Varel Jadebusen`` are places of Ganderkesee, Varel."""
    low = place.lower()
    return any(
        low == n.lower() or low.startswith((n.lower() + " ", n.lower() + "-")) for n in names
    )


def _base(place: str) -> str:
    """``Varel`` of ``Varel Jadebusen``, ``Zetel`` of ``Zetel-Neuenburg``: what to add."""
    return re.split(r"[\s-]", place, maxsplit=1)[0]


def _area_codes(model: RulesFile) -> Iterator[tuple[Loc, str]]:
    service = model.service_115
    if service is None or not service.by_area_code:
        return
    if _geocoder() is None:
        yield (
            ("service_115", "by_area_code"),
            "area codes not compared with the tenants' places: the phonenumbers "
            "geocoder data is not installed (install phonenumbers, not phonenumberslite)",
        )
        return
    for code, key in service.by_area_code.items():
        tenant = model.tenants.get(key)
        if tenant is None:
            continue
        place = place_of(code, model.region)
        names = _places(tenant)
        if place and not _matches(place, names):
            yield (
                ("service_115", "by_area_code", code),
                f"{code} is {place}, not a place of {tenant.name} ({', '.join(names)}); "
                f"if it belongs to {key}, add {_base(place)!r} to tenants.{key}.places",
            )
