"""Core value objects: the call we are asked about and the decision we hand back.

Everything here is immutable and free of I/O so that the routing core can be
called from any adapter (ARI, FastAGI, the CLI, benchmarks) and from tests
without a running loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Action(StrEnum):
    """What the adapter must do with the call."""

    QUEUE = "queue"
    """Hand the call to the shared queue (open hours)."""
    CLOSED = "closed"
    """Run the tenant's closed-hours handling."""
    MENU = "menu"
    """115 caller we could not place: play the menu and ask again with the digit."""
    REJECT = "reject"
    """Refuse the call (unknown number with ``unknown_did: {reject: …}``)."""


class ClosedThen(StrEnum):
    """What follows the closed-hours announcement."""

    HANGUP = "hangup"
    VOICEMAIL = "voicemail"
    FORWARD = "forward"
    QUEUE = "queue"


class OverrideState(StrEnum):
    """A manual override forces a scope open or closed."""

    OPEN = "open"
    CLOSED = "closed"


ALL_TENANTS = "*"
"""Override scope that applies to every tenant."""


@dataclass(frozen=True, slots=True)
class Call:
    """An inbound call as the PBX hands it to us.

    Attributes:
        did: The dialled number exactly as Asterisk reports it (``FROM_DID`` or
            the extension); any string, however malformed.
        caller: The caller number (``CALLERID(num)``); any string, may be empty.
        caller_name: The caller-ID display name; any string, may be empty.
        restricted: True when the network flagged the number as withheld
            (``CALLERID(num-pres)`` ``prohib*``), even if digits are present.
        menu_digit: ``None`` before the 115 menu was played; the digit the caller
            pressed afterwards, or ``""`` when the menu timed out.
    """

    did: str
    caller: str = ""
    caller_name: str = ""
    restricted: bool = False
    menu_digit: str | None = None


@dataclass(frozen=True, slots=True)
class Override:
    """A manual open/closed override set by an operator.

    Attributes:
        scope: A tenant id, or ``ALL_TENANTS`` (``"*"``) for every tenant.
        state: Forced state.
        reason: Free text shown in traces ("Unwetter").
        set_at: When it was set (timezone-aware).
        expires_at: When it stops applying (exclusive), or ``None`` for until cleared.
        id: Storage id, 0 for overrides that were never stored.
        set_by: Who set it (login name), for the audit trail.
    """

    scope: str
    state: OverrideState
    reason: str
    set_at: datetime
    expires_at: datetime | None = None
    id: int = 0
    set_by: str = ""

    def active_at(self, at: datetime) -> bool:
        """Whether the override applies at ``at``.

        Args:
            at: A timezone-aware instant.

        Returns:
            True when ``set_at <= at < expires_at`` (open-ended when no expiry).
        """
        if at < self.set_at:
            return False
        return self.expires_at is None or at < self.expires_at


@dataclass(frozen=True, slots=True)
class QueueTarget:
    """Where and how an open-hours call enters the queue.

    Attributes:
        key: The queue's key in the rules (``queues.<key>``).
        context: Dialplan context that runs ``Queue()``.
        queue: The app_queue queue name.
        priority: ``QUEUE_PRIO`` for the caller (higher is served first).
        whisper: Sound played to the agent before bridging (announce override).
        callerid_prefix: Prefix for the caller-ID name shown on agents' phones.
        timeout: Seconds before ``Queue()`` gives up, or ``None`` for the queue's own.
    """

    key: str
    context: str
    queue: str
    priority: int = 0
    whisper: str = ""
    callerid_prefix: str = ""
    timeout: int | None = None


@dataclass(frozen=True, slots=True)
class ClosedHandling:
    """The tenant's closed-hours handling.

    Attributes:
        then: What follows the announcement.
        announce: Sound played first, or ``""`` for none.
        target: Mailbox (``voicemail``), E.164 number (``forward``) or queue name (``queue``).
        queue: The resolved queue when ``then`` is ``queue``.
        context: Dialplan context that implements the closed handling.
    """

    then: ClosedThen
    announce: str = ""
    target: str = ""
    queue: QueueTarget | None = None
    context: str = "pbxbridge-closed"


@dataclass(frozen=True, slots=True)
class Menu:
    """The 115 menu asking an unplaceable caller which authority they want.

    Attributes:
        prompt: Sound to play.
        options: Digit to tenant id.
        default: Tenant id used when nothing (or an unknown digit) is pressed.
        timeout: Seconds to wait for the digit after the prompt.
    """

    prompt: str
    options: Mapping[str, str]
    default: str
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the call.

    Attributes:
        announce: Sound played before hanging up, or ``""``.
        context: Dialplan context that implements the rejection.
    """

    announce: str = ""
    context: str = "pbxbridge-reject"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a call, and why.

    Attributes:
        action: The action for the adapter.
        tenant: Tenant id, or ``None`` (menu pending, rejected without tenant).
        tenant_name: Display name of the tenant ("Gemeinde Wardenburg").
        greeting: What the agent says when picking up.
        did: The dialled number, normalised (E.164 where possible).
        caller: The caller in E.164, or ``None`` when withheld/absent/unparsable.
        caller_name: Sanitised caller-ID name (without our prefix).
        callerid_name: The caller-ID name to set on the channel (prefix applied).
        caller_invalid: The caller sent a "number" that is none (``<script>``,
            ``$(reboot)``, 300 digits): not withheld, not shown either.
        via_115: The call came in on a 115 number.
        queue: Queue target for ``QUEUE``.
        closed: Closed handling for ``CLOSED``.
        menu: Menu for ``MENU``.
        reject: Rejection for ``REJECT``.
        screen_pop_url: Rendered knowledge-base URL, ``""`` if the tenant has none.
        reasons: Human-readable trace of every step taken.
        menu_digit: The 115 menu digit the decision was made with (``""``: the
            menu timed out), ``None`` when no menu was played; journalled, so
            that a replay can route the call again exactly.
    """

    action: Action
    tenant: str | None
    tenant_name: str = ""
    greeting: str = ""
    did: str = ""
    caller: str | None = None
    caller_name: str = ""
    callerid_name: str = ""
    caller_invalid: bool = False
    via_115: bool = False
    queue: QueueTarget | None = None
    closed: ClosedHandling | None = None
    menu: Menu | None = None
    reject: Reject | None = None
    screen_pop_url: str = ""
    reasons: tuple[str, ...] = field(default_factory=tuple)
    menu_digit: str | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view of the decision (CLI ``--json``, logs, HTTP).

        Returns:
            A plain dict with string/number/bool/list/dict values only.
        """
        out: dict[str, object] = {
            "action": self.action.value,
            "tenant": self.tenant,
            "tenant_name": self.tenant_name,
            "greeting": self.greeting,
            "did": self.did,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "callerid_name": self.callerid_name,
            "via_115": self.via_115,
            "queue": _queue_dict(self.queue),
            "closed": None,
            "menu": None,
            "reject": None,
            "screen_pop_url": self.screen_pop_url,
            "reasons": list(self.reasons),
        }
        if self.closed is not None:
            out["closed"] = {
                "then": self.closed.then.value,
                "announce": self.closed.announce,
                "target": self.closed.target,
                "context": self.closed.context,
                "queue": _queue_dict(self.closed.queue),
            }
        if self.menu is not None:
            out["menu"] = {
                "prompt": self.menu.prompt,
                "options": dict(self.menu.options),
                "default": self.menu.default,
                "timeout": self.menu.timeout,
            }
        if self.reject is not None:
            out["reject"] = {"announce": self.reject.announce, "context": self.reject.context}
        return out


def _queue_dict(q: QueueTarget | None) -> dict[str, object] | None:
    if q is None:
        return None
    return {
        "key": q.key,
        "context": q.context,
        "queue": q.queue,
        "priority": q.priority,
        "whisper": q.whisper,
        "callerid_prefix": q.callerid_prefix,
        "timeout": q.timeout,
    }
