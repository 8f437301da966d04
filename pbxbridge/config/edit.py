"""Write imported closures into a rules file as a reviewable change.

``pbxbridge calendar --import`` turns an iCalendar file into ``closed`` and
``open`` entries of one calendar. The change is made to the YAML *text*, not by
dumping a parsed document: the operator's comments, quoting, order and flow
style stay as they were, and the diff shows only the added lines. Each added
line carries a comment naming the event it comes from.

What is added:

- an all-day series that repeats every year on the same date, for ever, becomes
  one yearly entry (``"12-27"  # Inventur``);
- the days of every other all-day event in the window become dated entries,
  consecutive days of one event as one range (``"2026-12-23..2027-01-05"``);
- a timed event that leaves part of a day open becomes a special opening with
  the hours that are left (``"2026-11-25": ["07:00-12:00"]``); one that leaves
  nothing open closes the day.

Nothing is added for a day that the rules already close all day (weekend,
holiday, an existing entry), for a range whose every day is closed already, or
for a yearly date already listed; a timed closure on a day that already has a
special opening is reported, not merged. The result is validated with the
loader before it is shown, so a diff never proposes an invalid file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import yaml

from pbxbridge.config.ical import Closure, YearlySeries
from pbxbridge.config.schema import CalendarConfig
from pbxbridge.core.calendar import Calendar, Interval, subtract


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry to add to a calendar.

    Attributes:
        section: ``closed`` or ``open``.
        key: The closed entry's text, or the special opening's date key.
        hours: The special opening's intervals (``open`` only).
        comment: Where it comes from (the event's title).
    """

    section: str
    key: str
    hours: tuple[str, ...] = ()
    comment: str = ""


@dataclass(slots=True)
class Plan:
    """What an import adds, and what it left out and why."""

    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_import(
    cal: Calendar,
    cfg: CalendarConfig,
    found: Sequence[Closure],
    series: Sequence[YearlySeries],
) -> Plan:
    """Turn closures and yearly series into the entries a calendar lacks.

    Args:
        cal: The compiled calendar as the rules have it now.
        cfg: Its configuration (to see which keys exist).
        found: Closures in the import window (series left out).
        series: Yearly all-day series.

    Returns:
        Entries in order: yearly ones, then dated closures, then special openings.
    """
    plan = Plan()
    listed = {text.strip() for text in cfg.closed}
    for s in series:
        if s.entry in listed:
            plan.notes.append(f"{s.entry} ({s.summary}): already listed")
            continue
        listed.add(s.entry)
        plan.entries.append(Entry("closed", s.entry, comment=s.summary))

    whole = [c for c in found if c.all_day]
    special = {key.strip() for key in cfg.open}
    for summary, first, last in sorted(_runs(whole), key=lambda run: run[1]):
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        text = first.isoformat() if first == last else f"{first}..{last}"
        if all(not cal.state_on(d)[0] for d in days):
            plan.notes.append(f"{text} ({summary}): closed all day already")
            continue
        clash = [d.isoformat() for d in days if d.isoformat() in special]
        if clash:
            # closed and open on one date is an error in the rules: the operator decides
            plan.notes.append(
                f"{text} ({summary}): {', '.join(clash)} has a special opening; change it by hand"
            )
            continue
        if text in listed:
            continue
        listed.add(text)
        plan.entries.append(Entry("closed", text, comment=summary))

    timed: dict[date, list[Closure]] = {}
    for c in found:
        if not c.all_day:
            timed.setdefault(c.day, []).append(c)
    for day, parts in sorted(timed.items()):
        summary = ", ".join(dict.fromkeys(p.summary for p in parts))
        intervals, _, _ = cal.state_on(day)
        left = subtract(intervals, tuple(Interval(p.start, p.end) for p in parts))
        if left == intervals:
            plan.notes.append(f"{day} ({summary}): outside the opening hours already")
            continue
        if day.isoformat() in special:
            plan.notes.append(
                f"{day} ({summary}): has a special opening already; change it by hand"
            )
            continue
        if not left:
            plan.entries.append(Entry("closed", day.isoformat(), comment=summary))
        else:
            hours = tuple(i.text for i in left)
            plan.entries.append(Entry("open", day.isoformat(), hours, comment=summary))
    return plan


def _runs(whole: Iterable[Closure]) -> Iterable[tuple[str, date, date]]:
    """Consecutive days of one event title, as (title, first, last)."""
    run: tuple[str, date, date] | None = None
    for c in sorted(whole, key=lambda c: (c.summary, c.day)):
        if run is not None and run[0] == c.summary and c.day == run[2] + timedelta(days=1):
            run = (run[0], run[1], c.day)
            continue
        if run is not None:
            yield run
        run = (c.summary, c.day, c.day)
    if run is not None:
        yield run


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    clean = " ".join(text.split())[:80]
    return f"  # {clean} (ics)" if clean else "  # (ics)"


def apply_entries(text: str, calendar: str, entries: Sequence[Entry]) -> str:
    """The rules text with ``entries`` added to ``calendars.<calendar>``.

    Block lists and mappings get new lines at their end, indented like their
    items; a flow ``[...]``/``{...}`` becomes a block with its items kept as
    written; a missing ``closed``/``open`` key is added after the calendar's
    last line.

    Args:
        text: The rules file's text.
        calendar: The calendar's key (it must exist).
        entries: What to add.

    Returns:
        The new text (unchanged when ``entries`` is empty).

    Raises:
        KeyError: If the calendar does not exist.
        ValueError: If the calendar is a flow mapping (``name: {hours: ...}``).
    """
    for section in ("closed", "open"):  # each step parses the text it gets anew
        items = [e for e in entries if e.section == section]
        if items:
            text = _add_section(text, calendar, section, items)
    return text


def _line(e: Entry) -> str:
    if e.section == "closed":
        return f"- {_quote(e.key)}{_comment(e.comment)}"
    hours = ", ".join(_quote(h) for h in e.hours)
    return f"{_quote(e.key)}: [{hours}]{_comment(e.comment)}"


def _calendar_node(text: str, calendar: str) -> yaml.MappingNode:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    for section, value in _pairs(root):
        if section == "calendars":
            for key, node in _pairs(value):
                if key == calendar and isinstance(node, yaml.MappingNode):
                    return node
    raise KeyError(calendar)


def _pairs(node: yaml.Node | None) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        return []
    return [(str(k.value), v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]


def _add_section(text: str, calendar: str, section: str, items: Sequence[Entry]) -> str:
    cal = _calendar_node(text, calendar)
    if cal.flow_style or not cal.value:
        raise ValueError(
            f"calendars.{calendar} is written on one line ({{...}}); write it as a block "
            "(one key per line) to import into it"
        )
    lines = text.splitlines(keepends=True)
    keys = [k for k, _ in cal.value]
    node = next((v for k, v in cal.value if k.value == section), None)
    key_col = keys[0].start_mark.column
    new = [_line(e) for e in items]
    if node is None:
        last = _last_line(cal.value[-1][1])
        block = [" " * key_col + f"{section}:\n"]
        block += [" " * (key_col + 2) + n + "\n" for n in new]
        return "".join(lines[: last + 1] + block + lines[last + 1 :])
    key_node = next(k for k in keys if k.value == section)
    is_block = isinstance(node, yaml.SequenceNode | yaml.MappingNode) and not node.flow_style
    if is_block and node.value:
        indent = _item_indent(lines, node)
        last = _last_line(node)
        block = [" " * indent + n + "\n" for n in new]
        return "".join(lines[: last + 1] + block + lines[last + 1 :])
    # A flow collection (or an empty value): rewrite it as a block, keeping
    # its items as written and the comment after it on the key's line.
    kept = _flow_items(text, node) if node.value else []
    start, end = node.start_mark.index, node.end_mark.index
    if node.tag == "tag:yaml.org,2002:null":
        start = end = key_node.end_mark.index + 1  # after "key:"
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    rest = text[end:line_end].rstrip()
    indent = " " * (key_col + 2)
    joined = "".join(f"\n{indent}{item}" for item in [*kept, *new])
    head = text[:start].rstrip(" ")
    return head + (" " + rest.lstrip() if rest.strip() else "") + joined + text[line_end:]


def _flow_items(text: str, node: yaml.Node) -> list[str]:
    """The items of a flow collection as written, as block lines."""
    if isinstance(node, yaml.SequenceNode):
        return ["- " + text[i.start_mark.index : i.end_mark.index] for i in node.value]
    assert isinstance(node, yaml.MappingNode)
    return [
        text[k.start_mark.index : k.end_mark.index]
        + ": "
        + text[v.start_mark.index : v.end_mark.index]
        for k, v in node.value
    ]


def _item_indent(lines: list[str], node: yaml.Node) -> int:
    first = node.value[0]
    start = first if isinstance(node, yaml.SequenceNode) else first[0]
    line = lines[start.start_mark.line]
    return len(line) - len(line.lstrip(" "))


def _last_line(node: yaml.Node) -> int:
    """The 0-based line of the last character of a node's value."""
    while (
        isinstance(node, yaml.SequenceNode | yaml.MappingNode)
        and node.value
        and not (node.flow_style)
    ):
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    end = node.end_mark
    return end.line - 1 if end.column == 0 else end.line
