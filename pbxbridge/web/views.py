"""HTML fragments of the agent page built from data (no request handling)."""

from __future__ import annotations

from collections.abc import Mapping

from pbxbridge.core.rules import Tenant
from pbxbridge.web.desk import CallbackItem
from pbxbridge.web.i18n import format_local, label
from pbxbridge.web.render import EMPTY, Markup, join, tag
from pbxbridge.web.sessions import Session


def callback_section(
    tenants: Mapping[str, Tenant],
    lang: str,
    session: Session,
    bucket: str,
    items: list[CallbackItem],
    tenant: str | None,
) -> Markup:
    """One bucket of the callbacks view (overdue, due today, later) as a table.

    Only the agent who recorded a callback, or a supervisor, gets its done button.
    """
    heading = tag("h2", f"{label(lang, bucket)} ({len(items)})")
    if not items:
        return tag(
            "section",
            heading,
            tag("p", label(lang, "none_open"), class_="empty"),
            id=bucket,
            class_=f"bucket {bucket}",
        )
    head = tag(
        "tr",
        *(
            tag("th", label(lang, k), scope="col")
            for k in (
                "col_due",
                "col_tenant",
                "col_number",
                "col_note",
                "col_recorded",
                "col_agent",
            )
        ),
        tag("th", "", scope="col"),
    )
    rows: list[Markup] = []
    for item in items:
        row = item.row
        done = EMPTY
        if item.mine or session.agent.supervisor:
            done = tag(
                "form",
                tag("input", type="hidden", name="csrf", value=session.csrf),
                tag("input", type="hidden", name="node", value=row.node),
                tag("input", type="hidden", name="call_id", value=row.call_id),
                tag("input", type="hidden", name="tenant", value=tenant or ""),
                tag("button", label(lang, "mark_done"), type="submit"),
                method="post",
                action="callbacks",
            )
        number = row.callback_number or ""
        rows.append(
            tag(
                "tr",
                tag("td", format_local(item.due_local, lang), class_="due"),
                tag("td", tenants[row.tenant].name if row.tenant in tenants else row.tenant),
                tag(
                    "td", tag("a", number, href=f"tel:{number}") if number else "–", class_="number"
                ),
                tag("td", row.disposition_note or "", class_="note"),
                tag("td", format_local(item.recorded_local, lang)),
                tag("td", row.disposition_by or ""),
                tag("td", done),
                data_call_id=row.call_id,
                data_node=row.node,
            )
        )
    table = tag("table", tag("thead", head), tag("tbody", join(rows)))
    return tag("section", heading, table, id=bucket, class_=f"bucket {bucket}")
