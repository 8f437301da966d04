"""Rendering a staffing forecast: table, CSV (German Excel) and JSON.

CSV and JSON list every half hour of every day for each tenant and then the
shared queue (tenant ``*``), so their shape never depends on the data; the
table shows only the half hours with calls, one grid of days per tenant.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pbxbridge.journal.render import csv_text, fixed_text, number_text
from pbxbridge.planning.forecast import SHARED, Forecast, Slot

FORMATS = ("table", "csv", "json")
"""The formats of ``pbxbridge forecast --format``."""

CSV_COLUMNS: tuple[str, ...] = (
    "tenant",
    "date",
    "weekday",
    "start",
    "calls",
    "aht_s",
    "patience_s",
    "agents",
    "model",
    "service_level_pct",
    "asa_s",
    "occupancy_pct",
    "abandon_pct",
)
"""Columns of :func:`format_csv`, in order (stable: append only)."""

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _pct(value: float) -> float:
    return value * 100


def slot_dict(slot: Slot) -> dict[str, Any]:
    """One half hour as plain data (percentages 0..100; ``None`` where not applicable)."""
    s = slot.staffing
    return {
        "tenant": slot.tenant,
        "date": slot.day.isoformat(),
        "weekday": slot.day.isoweekday(),
        "start": slot.start,
        "calls": slot.calls,
        "aht_s": slot.aht_s,
        "patience_s": slot.patience_s,
        "agents": slot.agents,
        "model": s.model if s is not None else None,
        "service_level_pct": _pct(s.service_level) if s is not None else None,
        "asa_s": s.asa_s if s is not None and math.isfinite(s.asa_s) else None,
        "occupancy_pct": _pct(s.occupancy) if s is not None else None,
        "abandon_pct": _pct(s.abandon) if s is not None else None,
    }


def forecast_dict(forecast: Forecast) -> dict[str, Any]:
    """The whole forecast as plain data (the JSON of ``--format json``)."""
    return {
        "week": f"{forecast.year}-W{forecast.week:02d}",
        "days": [d.isoformat() for d in forecast.days],
        "history": {
            "first": forecast.history[0].isoformat(),
            "last": forecast.history[1].isoformat(),
            "weeks": forecast.weeks,
        },
        "target_pct": round(forecast.target_level * 100, 6),
        "threshold_s": forecast.threshold_s,
        "model": forecast.model,
        "tenants": list(forecast.tenants),
        "after_closure_factor": dict(forecast.after_closure),
        "patience_s": dict(forecast.patience_s),
        "slots": [slot_dict(s) for s in forecast.slots],
    }


def format_json(forecast: Forecast) -> str:
    """The forecast as one JSON document."""
    return json.dumps(forecast_dict(forecast), ensure_ascii=False, indent=1)


def format_csv(
    forecast: Forecast, *, delimiter: str = ";", decimal: str = ",", bom: bool = False
) -> str:
    """The forecast as CSV, one row per tenant, day and half hour.

    Same conventions as the report's CSV (:func:`pbxbridge.journal.render.format_csv`):
    ``;`` and a decimal comma for German spreadsheet software, a byte-order mark
    on request (``bom=True`` for a file German Excel opens), CRLF line ends,
    empty cells where a figure does not apply.

    Args:
        forecast: The forecast.
        delimiter: Field separator.
        decimal: Decimal separator.
        bom: Start with a byte-order mark.

    Returns:
        The CSV text.
    """
    rows = []
    for slot in forecast.slots:
        d = slot_dict(slot)
        rows.append(
            [
                d["tenant"],
                d["date"],
                d["weekday"],
                d["start"],
                fixed_text(d["calls"], decimal, 2),
                fixed_text(d["aht_s"], decimal),
                fixed_text(d["patience_s"], decimal),
                d["agents"],
                d["model"] or "",
                fixed_text(d["service_level_pct"], decimal),
                fixed_text(d["asa_s"], decimal),
                fixed_text(d["occupancy_pct"], decimal),
                fixed_text(d["abandon_pct"], decimal),
            ]
        )
    return csv_text(CSV_COLUMNS, rows, delimiter=delimiter, bom=bom)


def format_table(forecast: Forecast) -> str:
    """A grid per tenant and the shared queue: half hours down, days across, ``calls/agents``."""
    lines = [
        f"Forecast {forecast.year}-W{forecast.week:02d}"
        f" from {forecast.history[0].isoformat()} to {forecast.history[1].isoformat()}"
        f" ({forecast.weeks} weeks); target {number_text(forecast.target_level * 100, '.')} %"
        f" in {number_text(forecast.threshold_s, '.')} s, {forecast.model};"
        " cells: calls/agents"
    ]
    order = [*forecast.tenants, SHARED] if len(forecast.tenants) > 1 else list(forecast.tenants)
    by_tenant: dict[str, dict[tuple[int, int], Slot]] = {t: {} for t in order}
    for slot in forecast.slots:
        by_tenant[slot.tenant][(forecast.days.index(slot.day), slot.index)] = slot
    header = "       " + "".join(
        f"{_WEEKDAYS[i] + ' ' + d.strftime('%d.%m.'):>12}" for i, d in enumerate(forecast.days)
    )
    for tenant in order:
        cells = by_tenant[tenant]
        patience = forecast.patience_s.get(tenant)
        title = "shared queue (all tenants)" if tenant == SHARED else tenant
        note = f"patience {patience:.0f} s" if patience is not None else "no abandons"
        if tenant != SHARED:
            note += f", after-closure factor {forecast.after_closure[tenant]:.2f}"
        lines += ["", f"{title}: {note}", header]
        busy = sorted({i for (_, i), s in cells.items() if s.calls > 0})
        if not busy:
            lines.append("       (no calls expected)")
        for index in busy:
            row = f"{cells[(0, index)].start}  "
            for n in range(len(forecast.days)):
                s = cells[(n, index)]
                text = f"{s.calls:.1f}/{s.agents}" if s.calls > 0 else "-"
                row += f"{text:>12}"
            lines.append(row)
        peak = max(cells.values(), key=lambda s: s.agents, default=None)
        if peak is not None and peak.agents:
            lines.append(f"peak: {peak.agents} agents on {peak.day.isoformat()} at {peak.start}")
    return "\n".join(lines) + "\n"
