"""Does a caller have an open callback? For the pop's note and the repeat-caller priority.

A number with an open callback ticket (the journal's callbacks list) or a
pending virtual hold (the virtual-hold store) that calls again gets a note in
the screen pop ("offener Rückruf vom Di 09:14") and, if the tenant's rules say
so, a higher queue priority (:func:`~pbxbridge.core.virtual_hold.repeat_priority`).

Like :class:`~pbxbridge.journal.repeat.RepeatCallers`, the lookup is a
:class:`~pbxbridge.journal.lookup.CallerLookup`: it starts when the call is
routed and runs in a worker thread; whatever is known when the pop goes out
(or the priority is set) is used, and a slow or dead database only means no
note. Open callbacks are few (tens per tenant), so one query per
lookup lists them all and the number is matched here.

Answers are kept a minute, but a callback taken meanwhile must show at once
(the citizen who accepted a callback, or was promised one by an agent, and
rings again 20 s later): the places that record one tell
:meth:`OpenCallbacks.hold_changed` (every saved virtual hold) and
:meth:`OpenCallbacks.forget` (an agent's callback ticket), which drop what is
known of those numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

from pbxbridge.core.virtual_hold import VirtualHold, open_callback_note
from pbxbridge.journal.lookup import CallerLookup
from pbxbridge.journal.store import JournalStore
from pbxbridge.journal.virtual_holds import open_callback_since
from pbxbridge.storage.virtual_holds import VirtualHoldStore

_TTL_S: Final = 60.0
"""A known answer is reused this long (a callback done meanwhile shows up after it)."""


class OpenCallbacks:
    """Cache of "open callback since" per caller number.

    Args:
        open_journal: Opens a journal store of its own (called in a worker thread).
        open_holds: Opens the virtual-hold store (worker thread); ``None``: tickets only.
        tz: The rules' time zone (the note's weekday and time).
        clock: Now (aware); tests inject one.
    """

    def __init__(
        self,
        open_journal: Callable[[], JournalStore],
        open_holds: Callable[[], VirtualHoldStore] | None,
        tz: ZoneInfo,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._open_journal = open_journal
        self._open_holds = open_holds
        self.tz = tz
        self._clock = clock
        self._journal: JournalStore | None = None
        self._holds: VirtualHoldStore | None = None
        self._lookup: CallerLookup[datetime | None] = CallerLookup(
            self._query,
            ttl_s=_TTL_S,
            failed_event="journal.open_callback_lookup_failed",
            on_failure=self._close_stores,  # reopen next time (connection lost)
        )

    def prefetch(self, caller: str | None) -> None:
        """Start looking a caller up (non-blocking; call when the call is routed).

        Args:
            caller: E.164 number, or ``None`` for withheld callers.
        """
        self._lookup.prefetch(caller)

    async def wait(self, caller: str) -> None:
        """Await a pending lookup of ``caller`` (off the call's path: repeat-caller bump, tests)."""
        await self._lookup.wait(caller)

    def forget(self, *numbers: str | None) -> None:
        """A callback of these numbers was just recorded: look them up afresh next time.

        Args:
            numbers: E.164 numbers (the caller's, the number to call back);
                ``None`` and ``""`` are skipped.
        """
        for number in numbers:
            self._lookup.forget(number)

    def hold_changed(self, hold: VirtualHold) -> None:
        """Observer of every saved virtual hold (the virtual-hold service's ``on_change``).

        From its acceptance on, each step may open or close the caller's
        callback (accepted: open; connected: closed; ticket: open on the
        callbacks list); an offer not taken changes nothing.

        Args:
            hold: The hold as saved.
        """
        if hold.accepted_at is not None:
            self.forget(hold.caller, hold.number)

    def since(self, caller: str | None) -> datetime | None:
        """When the caller's oldest open callback was asked for, if known.

        Args:
            caller: E.164 number or ``None``.

        Returns:
            The instant, ``None`` when none is open or it is not known (yet).
        """
        return self._lookup.get(caller)

    def note(self, caller: str | None) -> str | None:
        """The pop's note ("offener Rückruf vom Di 09:14"), ``None`` without an open callback."""
        since = self.since(caller)
        if since is None:
            return None
        now = self._clock().astimezone(self.tz)
        return open_callback_note(since.astimezone(self.tz), now=now)

    def _query(self, caller: str) -> datetime | None:
        if self._journal is None:
            self._journal = self._open_journal()
        holds = []
        if self._open_holds is not None:
            if self._holds is None:
                self._holds = self._open_holds()
            holds = self._holds.for_number(caller)
        return open_callback_since(
            caller, holds=holds, callbacks=self._journal.open_callbacks(None)
        )

    def _close_stores(self) -> None:
        for store in (self._journal, self._holds):
            if store is not None:
                with contextlib.suppress(Exception):  # closing a broken connection
                    store.close()
        self._journal = self._holds = None

    def close(self) -> None:
        """Cancel lookups and close the stores."""
        self._lookup.cancel()
        self._close_stores()
