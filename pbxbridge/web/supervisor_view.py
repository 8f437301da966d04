"""The supervisor board as HTML: figures, agents and two server-rendered SVG charts.

Everything is built with :func:`~pbxbridge.web.render.tag`, which escapes
every text and attribute: tenant names, agent names and pause reasons (which
an agent can type on the phone) stay inert. The charts use SVG presentation
attributes only (no ``style``), so the strict Content-Security-Policy holds.
The wallboard variant (``personal=False``) names no agent and no caller: it
shows counts only.
"""

from __future__ import annotations

from typing import Final

from pbxbridge.core import servicelevel
from pbxbridge.core.servicelevel import Fraction
from pbxbridge.tracking.agents_board import AgentState
from pbxbridge.tracking.call_board import SLOT_MINUTES, Tally
from pbxbridge.web.i18n import label
from pbxbridge.web.render import EMPTY, Markup, join, tag
from pbxbridge.web.supervisor_live import Snapshot, SupervisorConfig, TenantFigures

CHART_W: Final = 720
CHART_H: Final = 200
PAD_L: Final = 40
PAD_B: Final = 24
PAD_T: Final = 10
DAY_FROM: Final = 14  # 07:00
DAY_TO: Final = 38  # 19:00 (exclusive): widened to any half hour with calls
COLOURS: Final = {
    "ok": "#1b7f3b",
    "warn": "#b26a00",
    "bad": "#b3261e",
    "none": "#9e9e9e",
    "target": "#1f3a93",
    "offered": "#4a6fa5",
    "forecast": "#d0661c",
    "grid": "#d8d8d8",
    "text": "#333333",
}


def grade(fraction: Fraction, config: SupervisorConfig) -> str:
    """The colour class of a service level: ``ok``, ``warn``, ``bad`` or ``none``.

    ``ok`` meets the target; ``warn`` misses it by less than
    :attr:`SupervisorConfig.warn_points` percentage points; ``bad`` by more.
    """
    met = servicelevel.meets_target(fraction, config.target_percent)
    if met is None:
        return "none"
    if met:
        return "ok"
    if servicelevel.meets_target(fraction, config.target_percent - config.warn_points):
        return "warn"
    return "bad"


def percent_text(fraction: Fraction, lang: str) -> str:
    """A service level as shown: one decimal, truncated (a miss never reads as met)."""
    hundredths = fraction.hundredths()
    if hundredths is None:
        return "–"
    text = f"{hundredths // 10 / 10:.1f} %"
    return text.replace(".", ",") if lang == "de" else text


def duration_text(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour) for times in state and waits."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _ticker(since: float | None, now: float) -> Markup:
    if since is None:
        return tag("span", "–", class_="tick")
    return tag(
        "span", duration_text(now - since), class_="tick", data_since=str(round(since * 1000))
    )


def _sl_cell(fraction: Fraction, config: SupervisorConfig, lang: str, name: str) -> Markup:
    level = grade(fraction, config)
    return tag(
        "td",
        percent_text(fraction, lang),
        class_=f"sl sl-{level}",
        data_sl=name,
        data_grade=level,
        title=f"{fraction.num}/{fraction.den}" if fraction.den > 0 else None,
    )


def _big_tile(title: str, value: Markup | str, *, grade_: str = "", name: str = "") -> Markup:
    return tag(
        "div",
        tag("div", title, class_="tile-title"),
        tag("div", value, class_="tile-value"),
        class_=f"tile sl-{grade_}" if grade_ else "tile",
        data_tile=name,
        data_grade=grade_ or None,
    )


def _summary(snap: Snapshot, lang: str) -> Markup:
    shared = snap.rows[0]
    cfg = snap.config
    day = shared.today.sl_offered()
    recent = shared.recent.sl_offered()
    tiles = [
        _big_tile(label(lang, "sv_waiting"), str(shared.waiting.calls), name="waiting"),
        _big_tile(
            label(lang, "sv_longest"), _ticker(shared.longest_since, snap.unix), name="longest"
        ),
        _big_tile(
            label(lang, "sv_sl_day_offered"),
            percent_text(day, lang),
            grade_=grade(day, cfg),
            name="sl-day",
        ),
        _big_tile(
            label(lang, "sv_sl_15_offered"),
            percent_text(recent, lang),
            grade_=grade(recent, cfg),
            name="sl-15",
        ),
        _big_tile(
            label(lang, "sv_agents_needed"),
            f"{snap.signed_in} / {snap.agents_needed}",
            name="staffing",
            grade_="ok" if snap.signed_in >= snap.agents_needed else "bad",
        )
        if snap.agents_needed is not None
        else _big_tile(label(lang, "sv_agents_ready"), str(snap.signed_in), name="staffing"),
    ]
    if shared.virtual_holds is not None:
        tiles.append(
            _big_tile(label(lang, "sv_virtual_holds"), str(shared.virtual_holds), name="holds")
        )
    target = label(
        lang,
        "sv_target",
        target=f"{cfg.target_percent:g}",
        threshold=f"{cfg.threshold_s:g}",
    )
    return join(
        [
            tag("p", target, class_="target"),
            tag("div", join(tiles), class_="tiles"),
        ]
    )


def _tenant_table(snap: Snapshot, lang: str) -> Markup:
    holds = snap.rows[0].virtual_holds is not None
    keys = [
        "col_tenant",
        "sv_waiting",
        "sv_longest",
        "sv_offered",
        "sv_answered",
        "sv_abandoned",
        "sv_sl_day_answered",
        "sv_sl_day_offered",
        "sv_sl_15_answered",
        "sv_sl_15_offered",
        "sv_cb_today",
        "sv_cb_overdue",
    ]
    if holds:
        keys.append("sv_virtual_holds")
    head = tag("tr", *(tag("th", label(lang, k), scope="col") for k in keys))
    rows = [_tenant_row(row, snap, lang, holds) for row in snap.rows]
    table = tag("table", tag("thead", head), tag("tbody", join(rows)), class_="figures")
    return tag(
        "section",
        tag("h2", label(lang, "sv_queues")),
        tag("div", table, class_="scroll"),
        class_="queues",
    )


def _tenant_row(row: TenantFigures, snap: Snapshot, lang: str, holds: bool) -> Markup:
    cfg = snap.config
    today, recent = row.today, row.recent
    cells = [
        tag("th", row.name or label(lang, "sv_shared"), scope="row"),
        tag("td", str(row.waiting.calls), data_fig="waiting"),
        tag("td", _ticker(row.longest_since, snap.unix), data_fig="longest"),
        tag("td", str(today.offered), data_fig="offered"),
        tag("td", str(today.answered), data_fig="answered"),
        tag("td", str(today.abandoned), data_fig="abandoned"),
        _sl_cell(today.sl_answered(), cfg, lang, "day-answered"),
        _sl_cell(today.sl_offered(), cfg, lang, "day-offered"),
        _sl_cell(recent.sl_answered(), cfg, lang, "15-answered"),
        _sl_cell(recent.sl_offered(), cfg, lang, "15-offered"),
        tag("td", str(row.callbacks.due_today), data_fig="cb-today"),
        tag(
            "td",
            str(row.callbacks.overdue),
            data_fig="cb-overdue",
            class_="alert" if row.callbacks.overdue else None,
        ),
    ]
    if holds:
        cells.append(tag("td", str(row.virtual_holds or 0), data_fig="holds"))
    return tag(
        "tr",
        join(cells),
        data_tenant=row.tenant or "*",
        class_="shared" if not row.tenant else None,
    )


def _agents(snap: Snapshot, lang: str, personal: bool) -> Markup:
    title = tag("h2", label(lang, "sv_agents"))
    counts = dict.fromkeys(AgentState, 0)
    for view in snap.agents:
        counts[view.state] += 1
    summary = tag(
        "ul",
        join(
            [
                tag(
                    "li",
                    tag("span", str(counts[state]), class_="count"),
                    " ",
                    label(lang, f"sv_state_{state.value}"),
                    class_=f"state-{state.value}",
                    data_state=state.value,
                )
                for state in AgentState
            ]
        ),
        class_="state-counts",
    )
    if not personal:
        return tag("section", title, summary, class_="agents")
    if not snap.agents:
        return tag("section", title, summary, tag("p", label(lang, "sv_no_agents"), class_="empty"))
    cards = [
        tag(
            "li",
            tag("span", snap.names.get(view.agent, view.agent), class_="agent-name"),
            tag("span", _ticker(view.since, snap.unix), class_="since"),
            tag("span", label(lang, f"sv_state_{view.state.value}"), class_="state"),
            tag("span", view.reason, class_="reason") if view.reason else EMPTY,
            tag("span", ", ".join(view.queues), class_="queues"),
            data_agent=view.agent,
            data_state=view.state.value,
            class_=f"agent state-{view.state.value}",
        )
        for view in snap.agents
    ]
    grid = tag("ul", join(cards), class_="agent-grid", aria_label=label(lang, "sv_agents"))
    return tag("section", title, summary, grid, class_="agents")


# -- charts ----------------------------------------------------------------------------


def _window(snap: Snapshot) -> range:
    busy = [i for i, t in enumerate(snap.half_hours) if t.offered or t.answered or t.abandoned]
    lo = min([DAY_FROM, snap.slot, *busy])
    hi = max([DAY_TO, snap.slot + 1, *(i + 1 for i in busy)])
    return range(lo, hi)


def _slot_label(slot: int) -> str:
    minutes = slot * SLOT_MINUTES
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _frame(
    title: str, slots: range, top: float, unit: str, name: str, parts: list[Markup]
) -> Markup:
    """Axes, grid and labels around chart ``parts`` (y from 0 to ``top``)."""
    plot_w = CHART_W - PAD_L - 4
    plot_h = CHART_H - PAD_T - PAD_B
    grid: list[Markup] = []
    for i in range(5):
        value = top * i / 4
        y = PAD_T + plot_h - plot_h * i / 4
        grid.append(_rule(y, stroke=COLOURS["grid"]))
        grid.append(
            tag(
                "text",
                f"{value:g}{unit}",
                x=PAD_L - 4,
                y=f"{y + 4:.1f}",
                text_anchor="end",
                font_size="11",
                fill=COLOURS["text"],
            )
        )
    step = plot_w / max(1, len(slots))
    for k, slot in enumerate(slots):
        if slot % 4 == 0:  # every two hours
            grid.append(
                tag(
                    "text",
                    _slot_label(slot),
                    x=f"{PAD_L + k * step:.1f}",
                    y=CHART_H - 6,
                    font_size="11",
                    fill=COLOURS["text"],
                )
            )
    return tag(
        "svg",
        tag("title", title),
        join(grid),
        join(parts),
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {CHART_W} {CHART_H}",
        role="img",
        aria_label=title,
        class_="chart",
        data_chart=name,
        preserveAspectRatio="xMidYMid meet",
    )


def _rule(y: float, **attrs: object) -> Markup:
    """A horizontal line across the plot at height ``y`` (grid lines, the target)."""
    return tag("line", x1=PAD_L, x2=CHART_W - 4, y1=f"{y:.1f}", y2=f"{y:.1f}", **attrs)


def _bar(k: int, step: float, h: float, title: str, **attrs: object) -> Markup:
    """The ``k``-th bar of a chart, ``h`` high, standing on the plot's bottom line."""
    plot_h = CHART_H - PAD_T - PAD_B
    return tag(
        "rect",
        tag("title", title),
        x=f"{PAD_L + k * step + 1:.1f}",
        y=f"{PAD_T + plot_h - h:.1f}",
        width=f"{max(1.0, step - 2):.1f}",
        height=f"{h:.1f}",
        **attrs,
    )


def sl_chart(snap: Snapshot, lang: str) -> Markup:
    """Today's service level (over offered calls) per half hour against the target."""
    cfg = snap.config
    slots = _window(snap)
    plot_w = CHART_W - PAD_L - 4
    plot_h = CHART_H - PAD_T - PAD_B
    step = plot_w / max(1, len(slots))
    parts: list[Markup] = []
    for k, slot in enumerate(slots):
        tally: Tally = snap.half_hours[slot] if slot < len(snap.half_hours) else Tally()
        fraction = tally.sl_offered()
        ratio = fraction.ratio()
        if ratio is None:
            continue
        level = grade(fraction, cfg)
        parts.append(
            _bar(
                k,
                step,
                max(1.0, plot_h * ratio),
                f"{_slot_label(slot)} {percent_text(fraction, lang)}",
                fill=COLOURS[level],
                data_slot=slot,
                data_grade=level,
            )
        )
    y = PAD_T + plot_h - plot_h * cfg.target_percent / 100
    parts.append(
        _rule(
            y,
            stroke=COLOURS["target"],
            stroke_width="2",
            stroke_dasharray="6 4",
            data_target=f"{cfg.target_percent:g}",
        )
    )
    title = label(lang, "sv_chart_sl", target=f"{cfg.target_percent:g}")
    return _frame(title, slots, 100, "%", "sl", parts)


def arrivals_chart(snap: Snapshot, lang: str) -> Markup:
    """Calls offered per half hour today, against the forecast when there is one."""
    slots = _window(snap)
    plot_w = CHART_W - PAD_L - 4
    plot_h = CHART_H - PAD_T - PAD_B
    step = plot_w / max(1, len(slots))
    offered = [snap.half_hours[s].offered if s < len(snap.half_hours) else 0 for s in slots]
    forecast = snap.forecast or []
    expected = [forecast[s] if s < len(forecast) else 0.0 for s in slots]
    peak = max([1.0, *offered, *expected])
    top = float(_nice(peak / 4) * 4)  # four steps of 1, 2, 5 × 10^n: whole calls on each line
    parts: list[Markup] = []
    for k, (slot, count) in enumerate(zip(slots, offered, strict=True)):
        if not count:
            continue
        parts.append(
            _bar(
                k,
                step,
                plot_h * count / top,
                f"{_slot_label(slot)}: {count}",
                fill=COLOURS["offered"],
                data_slot=slot,
                data_offered=count,
            )
        )
    if snap.forecast:
        points = " ".join(
            f"{PAD_L + (k + 0.5) * step:.1f},{PAD_T + plot_h - plot_h * v / top:.1f}"
            for k, v in enumerate(expected)
        )
        parts.append(
            tag(
                "polyline",
                points=points,
                fill="none",
                stroke=COLOURS["forecast"],
                stroke_width="2",
                data_forecast="1",
            )
        )
    key = "sv_chart_arrivals" if snap.forecast else "sv_chart_arrivals_only"
    return _frame(label(lang, key), slots, top, "", "arrivals", parts)


def _nice(value: float) -> int:
    """The smallest of 1, 2, 5 × 10^n at or above ``value`` (a readable axis top)."""
    base = 1
    while True:
        for m in (1, 2, 5):
            if m * base >= value:
                return m * base
        base *= 10


def _charts(snap: Snapshot, lang: str) -> Markup:
    legend = tag(
        "p",
        tag("span", label(lang, "sv_legend_ok"), class_="sl-ok legend"),
        " ",
        tag(
            "span",
            label(lang, "sv_legend_warn", points=f"{snap.config.warn_points:g}"),
            class_="sl-warn legend",
        ),
        " ",
        tag("span", label(lang, "sv_legend_bad"), class_="sl-bad legend"),
        class_="legend-line",
    )
    return tag(
        "section",
        tag("h2", label(lang, "sv_charts")),
        legend,
        tag("div", sl_chart(snap, lang), arrivals_chart(snap, lang), class_="charts"),
        class_="chart-section",
    )


def render_board(snap: Snapshot, lang: str, personal: bool) -> str:
    """The whole board (what one live update replaces).

    Args:
        snap: The figures.
        lang: Language.
        personal: False for the wallboard: no agent names, only counts.

    Returns:
        HTML (escaped throughout).
    """
    parts = [_summary(snap, lang), _tenant_table(snap, lang), _agents(snap, lang, personal)]
    parts.append(_charts(snap, lang))
    stamp = tag("p", label(lang, "sv_as_of", time=snap.local.strftime("%H:%M:%S")), class_="as-of")
    return str(join([*parts, stamp]) if parts else EMPTY)


__all__ = ["arrivals_chart", "duration_text", "grade", "percent_text", "render_board", "sl_chart"]
