"""Which AMI events Asterisk sends to a session: login event classes and ``Filter`` actions.

Asterisk formats every event once per session that may receive it, and the
client then parses each one into a message object before it can throw it away:
on a busy system the dialplan's ``Newexten`` and ``VarSet`` events alone are
dozens per call. Two server-side mechanisms keep them on the Asterisk side:

* **Event classes at login** (``Events: agent,call,system`` instead of ``on``):
  Asterisk checks a session's class mask before it looks at anything else, so
  whole classes (``dialplan``: ``Newexten``, ``VarSet``; ``cdr``, ``dtmf``, ...)
  cost nothing further. :func:`login_events` picks the narrowest mask that still
  covers every wanted event; for a pattern it cannot place it says ``on``.
* **Filters** (the ``Filter`` action, ``Operation: Add``), one per wanted event:
  within the allowed classes only the named events pass. Exact names are sent
  as advanced filters (``MatchCriteria: name(Hangup)``: a hash lookup in
  Asterisk, no regular expression over the payload; Asterisk 22.0, 21.5, 20.10,
  18.25 and later); a list with a glob (``Queue*``) as one legacy regular
  expression over the event text. Filters live as long as the session: they are installed again
  after every login (:func:`install`).

Answers to our own actions (``Response: ...`` and the list entries of
``QueueStatus``) are not events and pass neither check, so neither mechanism can
hide them. ``Shutdown`` (Asterisk is going away) and ``OriginateResponse``
(completes ``originate(wait=True)``) are always added.

An administrator can set the same filter once in ``manager.conf`` instead, for
a manager user without the ``system`` write permission the ``Filter`` action
needs (see ``docs/freepbx.md``, 3.4)::

    [pbxbridge]
    eventfilter(action(include),name(QueueCallerJoin)) =
    eventfilter(action(include),name(Hangup)) =
    ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final

import structlog

from .errors import AmiActionFailed

__all__ = [
    "ALWAYS_EVENTS",
    "EVENT_CLASSES",
    "PASS_ALL",
    "filter_actions",
    "install",
    "login_events",
]

log = structlog.get_logger(__name__)

ALWAYS_EVENTS: Final = ("Shutdown", "OriginateResponse")
"""Events the client needs whatever the caller asked for."""

EVENT_CLASSES: Final[Mapping[str, str]] = {
    # app_queue: queue_channel_to_ami / queue_multi_channel_to_ami, EVENT_FLAG_AGENT
    "QueueCallerJoin": "agent",
    "QueueCallerLeave": "agent",
    "QueueCallerAbandon": "agent",
    "AgentCalled": "agent",
    "AgentRingNoAnswer": "agent",
    "AgentConnect": "agent",
    "AgentComplete": "agent",
    "AgentDump": "agent",
    "QueueMemberStatus": "agent",
    "QueueMemberAdded": "agent",
    "QueueMemberRemoved": "agent",
    "QueueMemberPause": "agent",
    "QueueMemberPenalty": "agent",
    "QueueMemberRinginuse": "agent",
    # channel and originate events, EVENT_FLAG_CALL
    "Hangup": "call",
    "OriginateResponse": "call",
    # main/asterisk.c, EVENT_FLAG_SYSTEM
    "Shutdown": "system",
    # app_userevent (the virtual hold's dialplan reports with it), EVENT_FLAG_USER
    "UserEvent": "user",
}
"""The manager class (``EVENT_FLAG_*``) Asterisk sends each known event under."""

PASS_ALL: Final[Mapping[str, str]] = {"Action": "Filter", "Operation": "Add", "Filter": "."}
"""A legacy include filter every event matches (undoes a partial filter)."""


def _is_glob(name: str) -> bool:
    return "*" in name or "?" in name


def _wanted(names: Iterable[str]) -> list[str]:
    """The caller's names plus :data:`ALWAYS_EVENTS`, first occurrence kept."""
    return list(dict.fromkeys((*names, *ALWAYS_EVENTS)))


def login_events(names: Iterable[str]) -> str:
    """The ``Events`` header of the ``Login`` action.

    Args:
        names: Wanted event names or globs; empty: every event.

    Returns:
        A comma-separated class list such as ``agent,call,system`` when every
        name is a known event, else ``on`` (all classes the user may read).
    """
    names = list(names)
    if not names or any(name not in EVENT_CLASSES for name in names):
        return "on"
    return ",".join(sorted({EVENT_CLASSES[name] for name in _wanted(names)}))


def filter_actions(names: Iterable[str]) -> list[dict[str, str]]:
    """The ``Filter`` actions that let only ``names`` (and :data:`ALWAYS_EVENTS`) through.

    Args:
        names: Event names or globs (validated by ``AmiConfig``: letters,
            digits, ``_``, ``*``, ``?``); empty: no filter at all.

    Returns:
        One advanced filter per name when all are exact names, else a single
        legacy regex filter for all; ``[]`` for no names.
    """
    names = list(names)
    if not names:
        return []
    wanted = _wanted(names)
    if any(_is_glob(name) for name in wanted):
        # A glob needs a regex: then one legacy filter (a POSIX regex over the
        # whole event text) covers every name. It may over-match ("Hangup" also
        # passes "HangupRequest"); the client-side filter is exact.
        regex = "|".join(name.replace("*", ".*").replace("?", ".") for name in wanted)
        return [{"Action": "Filter", "Operation": "Add", "Filter": f"Event: ({regex})"}]
    return [
        {"Action": "Filter", "Operation": "Add", "MatchCriteria": f"action(include),name({name})"}
        for name in wanted
    ]


async def install(
    send: Callable[[Mapping[str, str]], Awaitable[object]], names: Iterable[str]
) -> int:
    """Send :func:`filter_actions` on a freshly logged-in session.

    Filters only ever add to what passes, so a refusal of the first one (no
    ``system`` write permission) leaves the session unfiltered: correct, as the
    client filters again, only less efficient. A refusal after some were
    installed would silently lose the events of the rest; then one more filter
    that passes everything restores the unfiltered stream, and if even that is
    refused the error is raised (the caller drops the session and reconnects).

    Args:
        send: Sends one action and returns its answer; raises
            :class:`~.errors.AmiActionFailed` when Asterisk refuses it.
        names: As for :func:`filter_actions`.

    Returns:
        How many filters restrict the stream (0: none, all events pass).

    Raises:
        AmiActionFailed: A partial filter could not be widened again.
    """
    installed = 0
    for action in filter_actions(names):
        try:
            await send(action)
        except AmiActionFailed as exc:
            log.warning("ami.filter_refused", error=exc.message, installed=installed)
            if installed:
                await send(PASS_ALL)
            return 0
        installed += 1
    return installed
