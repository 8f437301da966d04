"""The routing decision: ``route(call, rules, at, overrides) -> Decision``.

Pure and synchronous: no I/O, no clock reads, no asyncio. The caller passes
the instant (``at``) and the overrides in force, so the same inputs always give
the same decision, and every decision carries the trace of how it was reached.

Order of steps:

1. Normalise the DID and the caller to E.164 (withheld callers explicitly).
2. 115 numbers: place the caller by the longest area-code prefix, else the
   ``otherwise`` rule (a tenant, or a DTMF menu answered in a second call to
   :func:`route` with ``Call.menu_digit`` set).
3. Tenant numbers: exact DID first, then the longest DID block.
4. Anything else: the ``unknown_did`` rule (a tenant, or reject).
5. Open or closed: a tenant override beats a global one beats the calendar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from pbxbridge.core.calendar import format_local
from pbxbridge.core.models import (
    ALL_TENANTS,
    Action,
    Call,
    Decision,
    Menu,
    Override,
    OverrideState,
)
from pbxbridge.core.numbers import (
    Number,
    is_withheld,
    normalize,
    sanitize_display_name,
    shorten,
)
from pbxbridge.core.rules import Rules, Tenant


def route(
    call: Call,
    rules: Rules,
    at: datetime,
    overrides: Sequence[Override] = (),
) -> Decision:
    """Decide where a call goes.

    Never raises for any DID, caller or name string.

    Args:
        call: The call as the PBX reported it.
        rules: Compiled rules.
        at: The instant of the decision; must be timezone-aware.
        overrides: Manual overrides (expired ones are ignored here).

    Returns:
        The decision with its reasons.

    Raises:
        ValueError: If ``at`` is naive (a programming error, not bad input).
    """
    if at.tzinfo is None:
        raise ValueError("route() needs a timezone-aware instant")
    reasons: list[str] = []
    did = normalize(call.did, rules.region)
    caller_reasons: list[str] = []
    caller = _caller(call, rules.region, caller_reasons)
    # A withheld caller's name is withheld too. It may even be the number:
    # FreePBX's inbound routes copy the number into an empty name.
    caller_name = "" if call.restricted else sanitize_display_name(call.caller_name)

    tenant_id: str | None = None
    via_115 = False
    caller_invalid = caller is None and not call.restricted and not is_withheld(call.caller)
    if did.e164 is None:
        reasons.append(f"DID {did.display!r} is not a phone number")
        reasons.extend(caller_reasons)
    elif rules.service_115 is not None and did.e164 in rules.service_115.dids:
        via_115 = True
        reasons.append(f"DID {did.e164} is a 115 number")
        reasons.extend(caller_reasons)
        tenant_id, menu_decision = _route_115(call, caller, rules, reasons)
        if menu_decision is not None:
            return Decision(
                action=Action.MENU,
                tenant=None,
                did=did.e164,
                caller=caller,
                caller_name=caller_name,
                callerid_name=caller_name,
                caller_invalid=caller_invalid,
                via_115=True,
                menu=menu_decision,
                reasons=tuple(reasons),
            )
    else:
        tenant_id = _tenant_for_did(did.e164, rules, reasons)
        reasons.extend(caller_reasons)

    if tenant_id is None:
        unknown = rules.unknown_did
        if unknown.reject is not None or unknown.tenant is None:
            reasons.append("unknown DID: rejected (unknown_did.reject)")
            return Decision(
                action=Action.REJECT,
                tenant=None,
                did=did.e164 or did.display,
                caller=caller,
                caller_name=caller_name,
                callerid_name=caller_name,
                caller_invalid=caller_invalid,
                reject=unknown.reject,
                reasons=tuple(reasons),
            )
        tenant_id = unknown.tenant
        reasons.append(f"unknown DID: routed as tenant {tenant_id} (unknown_did.tenant)")

    tenant = rules.tenants[tenant_id]
    is_open = _is_open(tenant, rules, at, overrides, reasons)
    decision = _decision(tenant, is_open, did, caller, caller_name, via_115, reasons)
    if caller_invalid or (via_115 and call.menu_digit is not None):
        # Rare (a menu was played, or the caller sent garbage): the common
        # decision is built once, without a second copy.
        menu_digit = call.menu_digit if via_115 else None
        return replace(decision, caller_invalid=caller_invalid, menu_digit=menu_digit)
    return decision


def _caller(call: Call, region: str, reasons: list[str]) -> str | None:
    if call.restricted:
        reasons.append("caller withheld (presentation restricted)")
        return None
    if is_withheld(call.caller):
        reasons.append("caller withheld (no number)")
        return None
    number = normalize(call.caller, region)
    if number.e164 is None:
        # Reasons are logged at info level and journalled: a "number" that is
        # not one (tel:+49…, 0441/…;cpc=x) is still the caller's, so shortened.
        reasons.append(
            f"caller {shorten(call.caller)!r} is not a phone number: treated as withheld"
        )
    return number.e164


def _route_115(
    call: Call, caller: str | None, rules: Rules, reasons: list[str]
) -> tuple[str | None, Menu | None]:
    service = rules.service_115
    assert service is not None  # checked by the caller
    menu = service.otherwise_menu
    if call.menu_digit is not None and menu is not None:
        digit = call.menu_digit
        chosen = menu.options.get(digit)
        if chosen is not None:
            reasons.append(f"115 menu: caller pressed {digit} → {chosen}")
            return chosen, None
        if digit:
            reasons.append(
                f"115 menu: {sanitize_display_name(digit, 4)!r} is not an option "
                f"→ default {menu.default}"
            )
        else:
            reasons.append(f"115 menu: no digit pressed → default {menu.default}")
        return menu.default, None
    if caller is None:
        reasons.append("115: caller withheld, cannot place by area code")
    else:
        hit = service.by_area_code.longest(caller)
        if hit is not None:
            prefix, tenant_id, text = hit
            reasons.append(
                f"115: caller {shorten(caller)} in area code {text} ({prefix}) → {tenant_id}"
            )
            return tenant_id, None
        reasons.append(f"115: caller {shorten(caller)} matches no configured area code")
    if service.otherwise_tenant is not None:
        reasons.append(f"115 otherwise → {service.otherwise_tenant}")
        return service.otherwise_tenant, None
    if menu is not None:
        reasons.append(f"115 otherwise → menu {menu.prompt} (default {menu.default})")
        return None, menu
    return None, None


def _tenant_for_did(did: str, rules: Rules, reasons: list[str]) -> str | None:
    exact = rules.exact_dids.get(did)
    if exact is not None:
        reasons.append(f"DID {did} matched tenant {exact[0]} (exact {exact[1]!r})")
        return exact[0]
    hit = rules.prefix_dids.longest(did)
    if hit is not None:
        prefix, tenant_id, text = hit
        reasons.append(f"DID {did} matched tenant {tenant_id} (block {text!r}, prefix {prefix})")
        return tenant_id
    reasons.append(f"DID {did} is claimed by no tenant")
    return None


def tenant_open(tenant: Tenant, rules: Rules, at: datetime, overrides: Sequence[Override]) -> bool:
    """Whether a tenant is open at ``at``: its override in force, else its calendar.

    The same verdict :func:`route` gives a call (virtual hold asks it at closing time).
    """
    return _is_open(tenant, rules, at, overrides, [])


def _is_open(
    tenant: Tenant,
    rules: Rules,
    at: datetime,
    overrides: Sequence[Override],
    reasons: list[str],
) -> bool:
    chosen = _override_for(tenant.id, at, overrides)
    local = at.astimezone(rules.timezone)
    if chosen is not None:
        until = (
            f" until {format_local(chosen.expires_at.astimezone(rules.timezone))}"
            if (chosen.expires_at is not None)
            else " until cleared"
        )
        who = "all tenants" if chosen.scope == ALL_TENANTS else chosen.scope
        reasons.append(
            f"override #{chosen.id} for {who}: forced {chosen.state.value}{until}"
            f" ({sanitize_display_name(chosen.reason, 120) or 'no reason given'})"
        )
        reasons.append(f"{format_local(local)}: calendar {tenant.calendar.name} not consulted")
        return chosen.state is OverrideState.OPEN
    state = tenant.calendar.state_at(local)
    reasons.append(f"{state.reason} (calendar {tenant.calendar.name})")
    return state.is_open


def _override_for(tenant_id: str, at: datetime, overrides: Sequence[Override]) -> Override | None:
    """The override in force for a tenant: its own newest, else the newest global one."""
    own: Override | None = None
    common: Override | None = None
    for item in overrides:
        if not item.active_at(at):
            continue
        if item.scope == tenant_id:
            if own is None or item.set_at >= own.set_at:
                own = item
        elif item.scope == ALL_TENANTS and (common is None or item.set_at >= common.set_at):
            common = item
    return own if own is not None else common


def _decision(
    tenant: Tenant,
    is_open: bool,
    did: Number,
    caller: str | None,
    caller_name: str,
    via_115: bool,
    reasons: list[str],
) -> Decision:
    prefix = tenant.open.callerid_prefix
    callerid_name = f"{prefix}: {caller_name}" if prefix and caller_name else prefix or caller_name
    url = ""
    if tenant.screen_pop is not None:
        url = tenant.screen_pop.render(
            {
                "caller": caller or "",
                "tenant": tenant.id,
                "did": did.e164 or "",
                "caller_name": caller_name,
                "via_115": "1" if via_115 else "0",
            }
        )
    closed = None if is_open else tenant.closed
    if closed is None:
        reasons.append(f"open → queue {tenant.open.queue} (priority {tenant.open.priority})")
    else:
        target = f" {closed.target}" if closed.target else ""
        reasons.append(f"closed → {closed.then.value}{target}")
    return Decision(
        action=Action.QUEUE if closed is None else Action.CLOSED,
        tenant=tenant.id,
        tenant_name=tenant.name,
        greeting=tenant.greeting,
        did=did.e164 or did.display,
        caller=caller,
        caller_name=caller_name,
        callerid_name=callerid_name,
        via_115=via_115,
        # Closed handling that hands over to another queue carries that queue.
        queue=tenant.open if closed is None else closed.queue,
        closed=closed,
        screen_pop_url=url,
        reasons=tuple(reasons),
    )
