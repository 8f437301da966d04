"""Rendering a service-level report: table, CSV, JSON and the monthly invoice.

Takes a :class:`~pbxbridge.journal.report.Report` (see that module for what
each figure means) and renders it; nothing here aggregates or reads a
database. Percentages are *truncated* (not rounded) to two decimals, in exact
integer arithmetic, so a report never shows a missed promise as met.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from pbxbridge.journal.report import (
    COUNTERS,
    FIGURES,
    PCT_FIELDS,
    SECONDS_FIELDS,
    TOTAL,
    Figures,
    Granularity,
    Report,
    period_range,
)

FORMATS = ("table", "csv", "json", "invoice")
"""The formats of ``pbxbridge report --format``."""

ALL = "*"
"""Tenant column value of the all-tenants totals row in CSV."""


CSV_COLUMNS: tuple[str, ...] = (
    "tenant",
    "bucket",
    "bucket_start",
    "bucket_end",
    "threshold_s",
    "short_abandon_s",
    *FIGURES,
)
"""Columns of :func:`format_csv`, in order (stable: append only)."""


def _pct_hundredths(fig: Figures, name: str) -> int | None:
    """A percentage in hundredths of a percent, truncated, in exact integer arithmetic."""
    return fig.fraction(name).hundredths()


def _pct_text(fig: Figures, name: str, places: int = 2, decimal: str = ".") -> str:
    hundredths = _pct_hundredths(fig, name)
    if hundredths is None:
        return ""
    whole, frac = divmod(hundredths, 100)
    if places == 0:
        return str(whole)
    digits = f"{frac:02d}"[:places]
    return f"{whole}{decimal}{digits}"


def fixed_text(value: float | None, decimal: str = ".", places: int = 1) -> str:
    """``value`` with ``places`` decimals and the given separator; ``""`` for ``None``."""
    if value is None:
        return ""
    return f"{value:.{places}f}".replace(".", decimal)


def number_text(value: float, decimal: str) -> str:
    """``value`` as short as exact (``20``, ``2,5``) with the given separator."""
    return (f"{value:g}" if value != int(value) else str(int(value))).replace(".", decimal)


def _figure_values(fig: Figures, decimal: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in COUNTERS:
        out[name] = str(getattr(fig, name))
    for name in PCT_FIELDS:
        out[name] = _pct_text(fig, name, 2, decimal)
    for name in SECONDS_FIELDS:
        out[name] = fixed_text(getattr(fig, name), decimal)
    return out


def csv_text(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    delimiter: str = ";",
    bom: bool = False,
) -> str:
    """CSV as German spreadsheet software and finance offices read it.

    One writer for every CSV pbxbridge prints (reports, invoices, forecasts):
    ``;`` between fields by default (with a decimal comma in the cells, which
    the caller formats), CRLF line ends as RFC 4180 and Excel expect, and on
    request a byte-order mark: without it German Excel does not read UTF-8 and
    umlauts break.

    Args:
        header: The column names.
        rows: The rows, cells already formatted.
        delimiter: Field separator.
        bom: Start with a byte-order mark.

    Returns:
        The CSV text.
    """
    buf = io.StringIO()
    if bom:
        buf.write("\ufeff")
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def spreadsheet_cell(value: object) -> str:
    """A cell's text, defused where a spreadsheet would run it as a formula.

    Text from calls (a DID, a caller's name, a reason) can start with ``=``,
    ``@`` or ``+``/``-``; Excel and LibreOffice then evaluate it. Such text gets
    a leading apostrophe; numbers (``+49…``, ``-3``) stay data.
    """
    text = "" if value is None else str(value)
    if text[:1] in ("=", "@", "\t", "\r") or (text[:1] in ("+", "-") and not text[1:2].isdigit()):
        return "'" + text
    return text


def _rows_of(report: Report) -> Iterable[tuple[str, str, datetime, datetime, Figures]]:
    """Every (tenant, bucket label, start, end, figures), totals included, in order."""
    first, after = period_range(report.start, report.end, report.tz)
    p_start, p_end = first.astimezone(report.tz), after.astimezone(report.tz)
    for part in report.tenants:
        for b in part.buckets:
            yield part.tenant, b.label, b.start, b.end, b.figures
        yield part.tenant, TOTAL, p_start, p_end, part.total
    yield ALL, TOTAL, p_start, p_end, report.total


def format_csv(
    report: Report, *, delimiter: str = ";", decimal: str = ",", bom: bool = False
) -> str:
    """The report as CSV: one row per tenant and bucket, totals rows, a header.

    The default suits German spreadsheet software and finance offices: ``;``
    between fields and a decimal comma (German Excel opens such a file with
    a double-click and reads ``85,50`` as a number). Columns are
    :data:`CSV_COLUMNS` with stable English names; times are ISO 8601 with
    offset; empty cells mean "not applicable" (no denominator). Each tenant's
    buckets are followed by its ``total`` row; the last row (tenant ``*``) is
    the total over all tenants. Pass ``bom=True`` for a file German Excel
    opens: without the byte-order mark it does not read UTF-8, and umlauts break.

    Args:
        report: The report.
        delimiter: Field separator.
        decimal: Decimal separator (``"."`` for machine consumers).
        bom: Start with a byte-order mark.

    Returns:
        The CSV text (CRLF line ends, as RFC 4180 and Excel expect).
    """
    threshold = number_text(report.threshold_s, decimal)
    short = number_text(report.short_abandon_s, decimal)
    rows = []
    for who, label, b_start, b_end, fig in _rows_of(report):
        values = _figure_values(fig, decimal)
        values.update(
            tenant=who,
            bucket=label,
            bucket_start=b_start.isoformat(),
            bucket_end=b_end.isoformat(),
            threshold_s=threshold,
            short_abandon_s=short,
        )
        rows.append([values[c] for c in CSV_COLUMNS])
    return csv_text(CSV_COLUMNS, rows, delimiter=delimiter, bom=bom)


INVOICE_COLUMNS: tuple[str, ...] = (
    "Mandant",
    "Zeitraum",
    "Anrufe gesamt",
    "Angeboten (Warteschlange)",
    "Angenommen",
    "Angenommen innerhalb Schwelle",
    "Schwelle (s)",
    "Servicelevel angenommen (%)",
    "Servicelevel angeboten (%)",
    "Aufgelegt",
    "davon Kurzaufleger",
    "Außerhalb Öffnungszeiten",
    "Über 115 (%)",
    "Mittlere Wartezeit (s)",
    "90%-Wartezeit (s)",
    "Mittlere Gesprächsdauer (s)",
    "Beim Erstkontakt erledigt",
    "Rückruf vereinbart",
    "Erstlösungsquote (%)",
    "Rückrufe offen fällig",
    "Rückrufe überfällig",
    "Rückrufe fristgerecht (%)",
    "Abgewiesen",
    "Rückruf statt Warten angeboten",
    "Rückruf statt Warten angenommen",
    "Rückruf statt Warten verbunden",
    "Rückruf statt Warten nicht erreicht (Rückrufauftrag)",
    "Rückruf statt Warten offen",
    "Mittlere Zeit bis Rückruf (s)",
    "90%-Zeit bis Rückruf (s)",
)
"""Columns of :func:`monthly_invoice_csv`, in order (stable: append only).

The virtual-hold columns are a service done for the tenant (each connected
callback is an outbound call the service centre placed): offered, accepted,
connected, not reached (became a callback ticket, also on the agents'
callback list and so in the callback columns by its deadline), still open,
and the time from the request to the connection.
"""

INVOICE_TOTAL = "Summe"
"""``Zeitraum`` of the invoice CSV's totals row."""


def monthly_invoice_csv(report: Report, tenant: str, *, bom: bool = False) -> str:
    """One tenant's figures as a German CSV to attach to its monthly invoice.

    Meant for ``build_report(start=first of month, end=last, by="day")``: one row
    per day, then a ``Summe`` row for the month; other granularities work the
    same way. German column names (:data:`INVOICE_COLUMNS`), ``;`` separator,
    decimal comma, dates as ``TT.MM.JJJJ``; percentages truncated to two
    decimals. Pass ``bom=True`` for a file (see :func:`format_csv`).

    Args:
        report: The report.
        tenant: The tenant.
        bom: Start with a byte-order mark.

    Returns:
        The CSV text.

    Raises:
        KeyError: If the tenant is not in the report.
    """
    part = report.tenant(tenant)
    threshold = number_text(report.threshold_s, ",")
    rows = [(_german_label(b.label, report.by), b.figures) for b in part.buckets]
    rows.append((INVOICE_TOTAL, part.total))
    lines = []
    for label, fig in rows:
        v = _figure_values(fig, ",")
        lines.append(
            [
                tenant,
                label,
                v["calls"],
                v["offered"],
                v["answered"],
                v["answered_within"],
                threshold,
                v["sl_answered_pct"],
                v["sl_offered_pct"],
                v["abandoned"],
                v["short_abandoned"],
                v["closed_hours"],
                v["via_115_pct"],
                v["mean_wait_s"],
                v["p90_wait_s"],
                v["mean_talk_s"],
                v["resolved"],
                v["callbacks_requested"],
                v["fcr_pct"],
                v["callbacks_due"],
                v["callbacks_overdue"],
                v["callback_on_time_pct"],
                v["rejected"],
                v["virtual_hold_offered"],
                v["virtual_hold_accepted"],
                v["virtual_hold_connected"],
                v["virtual_hold_failed"],
                v["virtual_hold_pending"],
                v["virtual_hold_mean_to_connect_s"],
                v["virtual_hold_p90_to_connect_s"],
            ]
        )
    return csv_text(INVOICE_COLUMNS, lines, bom=bom)


def _german_label(label: str, by: Granularity | None) -> str:
    # 2026-03-29 -> 29.03.2026; 2026-03 -> 03.2026; hours keep their suffix.
    if by == "day":
        return date.fromisoformat(label).strftime("%d.%m.%Y")
    if by == "month":
        year, month = label.split("-")
        return f"{month}.{year}"
    if by == "hour":
        day, rest = label.split(" ", 1)
        return f"{date.fromisoformat(day).strftime('%d.%m.%Y')} {rest}"
    return label


def _figures_json(fig: Figures) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(fig, name) for name in COUNTERS}
    for name in PCT_FIELDS:
        hundredths = _pct_hundredths(fig, name)
        out[name] = None if hundredths is None else hundredths / 100
    for name in SECONDS_FIELDS:
        value = getattr(fig, name)
        out[name] = None if value is None else round(value, 2)
    return out


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data (what :func:`format_json` prints).

    Args:
        report: The report.

    Returns:
        ``{"period", "threshold_s", "short_abandon_s", "now", "tenants", "total"}``;
        each tenant has ``buckets`` (``bucket``, ``start``, ``end`` and the
        figures) and ``total``; percentages truncated to two decimals.
    """
    return {
        "period": {
            "start": report.start.isoformat(),
            "end": report.end.isoformat(),
            "timezone": report.tz.key,
            "by": report.by,
        },
        "threshold_s": report.threshold_s,
        "short_abandon_s": report.short_abandon_s,
        "now": report.now.isoformat(),
        "tenants": [
            {
                "tenant": part.tenant,
                "buckets": [
                    {
                        "bucket": b.label,
                        "start": b.start.isoformat(),
                        "end": b.end.isoformat(),
                        **_figures_json(b.figures),
                    }
                    for b in part.buckets
                ],
                "total": _figures_json(part.total),
            }
            for part in report.tenants
        ],
        "total": _figures_json(report.total),
    }


def format_json(report: Report) -> str:
    """The report as one JSON document (see :func:`report_dict`).

    Args:
        report: The report.

    Returns:
        JSON text (UTF-8 characters kept as they are).
    """
    return json.dumps(report_dict(report), ensure_ascii=False)


_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    # (header, field); "" headers are the tenant and bucket label
    ("calls", "calls"),
    ("offered", "offered"),
    ("answ", "answered"),
    ("aband", "abandoned"),
    ("short", "short_abandoned"),
    ("SL ans%", "sl_answered_pct"),
    ("SL off%", "sl_offered_pct"),
    ("wait", "mean_wait_s"),
    ("p90", "p90_wait_s"),
    ("talk", "mean_talk_s"),
    ("closed", "closed_hours"),
    ("115%", "via_115_pct"),
    ("FCR%", "fcr_pct"),
    ("CB due", "callbacks_due"),
    ("overdue", "callbacks_overdue"),
    ("CB ok%", "callback_on_time_pct"),
    ("rej", "rejected"),
)


def format_table(report: Report) -> str:
    """The report as a plain-text table for the terminal.

    Args:
        report: The report.

    Returns:
        A heading with period and conventions, then one line per tenant and
        bucket, each tenant's total, and the total over all tenants. ``-``
        marks figures without a denominator.
    """
    heading = (
        f"service level {report.start.isoformat()}..{report.end.isoformat()} "
        f"({report.tz.key}, {'by ' + report.by if report.by else 'totals'}): SL = answered within "
        f"{number_text(report.threshold_s, '.')} s; SL off% excludes abandons under "
        f"{number_text(report.short_abandon_s, '.')} s from offered; "
        f"overdue as of {report.now.astimezone(report.tz):%Y-%m-%d %H:%M}"
    )
    header = ["tenant", "period", *(h for h, _ in _TABLE_COLUMNS)]
    lines: list[list[str]] = []
    for who, label, _, _, fig in _rows_of(report):
        name = "(all)" if who == ALL else (who or "(no tenant)")
        values = []
        for _, attr in _TABLE_COLUMNS:
            if attr in PCT_FIELDS:
                text = _pct_text(fig, attr, 1)
            elif attr in SECONDS_FIELDS:
                text = fixed_text(getattr(fig, attr))
            else:
                text = str(getattr(fig, attr))
            values.append(text or "-")
        lines.append([name, label, *values])
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        head = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        rest = [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(head + rest).rstrip()

    return "\n".join([heading, fmt(header), *(fmt(r) for r in lines)])
