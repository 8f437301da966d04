"""HTML fragments of the agent and supervisor pages built from data (no request handling)."""

from __future__ import annotations

from collections.abc import Mapping

from pbxbridge.core.rules import Tenant
from pbxbridge.web.desk import CallbackItem
from pbxbridge.web.i18n import format_local, label
from pbxbridge.web.render import EMPTY, Markup, join, tag
from pbxbridge.web.sessions import Session


def nav(lang: str, session: Session, *, current: str, base: str = "") -> Markup:
    """The bar at the top of every signed-in page: links, who is signed in, sign out.

    Args:
        lang: Page language.
        session: The signed-in agent's session (its CSRF token signs the logout).
        current: ``"desk"``, ``"callbacks"`` or ``"supervisor"``: the page shown.
        base: The agent page's URL relative to the page shown (``""`` on the
            agent page itself, ``"../agent/"`` on the supervisor page).

    Returns:
        The ``<nav>``; the supervisor link only for supervisors.
    """
    other = "en" if lang == "de" else "de"

    def link(key: str, href: str, page: str) -> Markup:
        return tag(
            "a", label(lang, key), href=href, aria_current="page" if current == page else None
        )

    links = [
        link("nav_desk", base or "./", "desk"),
        link("nav_callbacks", base + "callbacks", "callbacks"),
    ]
    if session.agent.supervisor:
        href = "./" if current == "supervisor" else "../supervisor/"
        links.append(link("sv_nav", href, "supervisor"))
    links.append(
        tag("a", label(lang, "lang_other"), href=f"?lang={other}", hreflang=other, class_="lang")
    )
    who = tag(
        "span",
        f"{label(lang, 'signed_in_as')} ",
        tag("strong", session.agent.name, id="agent-name"),
        class_="who",
    )
    logout = tag(
        "form",
        tag("input", type="hidden", name="csrf", value=session.csrf),
        tag("button", label(lang, "sign_out"), type="submit", class_="link"),
        method="post",
        action=base + "logout",
        class_="logout",
    )
    return tag("nav", join(links), who, logout, class_="nav")


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
