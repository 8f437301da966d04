"""Open callbacks of a caller (journal tickets and pending virtual holds) for the pop's note."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pbxbridge.core.virtual_hold import (
    VHoldEvent,
    VirtualHoldPolicy,
    check_callback_number,
    offered,
    step,
)
from pbxbridge.journal.open_callbacks import OpenCallbacks
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.storage.virtual_holds import SqliteVirtualHoldStore
from tests.unit.test_journal_store import entry

BERLIN = ZoneInfo("Europe/Berlin")
TUESDAY = datetime(2026, 12, 1, 9, 14, tzinfo=BERLIN)
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=BERLIN)
TICKET_CALLER = "+494411234567"
HOLD_NUMBER = "+4915112345678"


class TestOpenCallbacks:
    async def test_ticket_and_pending_hold_give_a_note(self, tmp_path: Path) -> None:
        journal_path, state = tmp_path / "j.sqlite", tmp_path / "state.sqlite"
        with SqliteJournal(journal_path) as journal:
            journal.upsert([entry("t1", arrived_at=TUESDAY.astimezone(UTC), caller=TICKET_CALLER)])
            journal.set_disposition(
                "n1", "t1", "callback", "anna", "", None, NOW + timedelta(days=1),
                TUESDAY.astimezone(UTC),
            )  # fmt: skip
        with SqliteVirtualHoldStore(state) as store:
            h = offered(
                node="n1", call_id="v1", tenant="wardenburg", queue="q", priority=0,
                caller=None, arrived_at=NOW - timedelta(hours=1), at=NOW - timedelta(hours=1),
            )  # fmt: skip
            accepted_at = datetime(2026, 12, 3, 8, 5, tzinfo=BERLIN)
            h = step(
                h, VHoldEvent.ACCEPTED, at=accepted_at, policy=VirtualHoldPolicy(),
                number=check_callback_number(HOLD_NUMBER),
            )  # fmt: skip
            store.save(h)
        lookup = OpenCallbacks(
            lambda: SqliteJournal(journal_path),
            lambda: SqliteVirtualHoldStore(state),
            BERLIN,
            clock=lambda: NOW,
        )
        try:
            for number in (TICKET_CALLER, HOLD_NUMBER, "+4930123456"):
                lookup.prefetch(number)
                await lookup.wait(number)
            assert lookup.note(TICKET_CALLER) == "offener Rückruf vom Di 09:14"
            assert lookup.note(HOLD_NUMBER) == "offener Rückruf vom Do 08:05"
            assert lookup.note("+4930123456") is None
            assert lookup.note(None) is None
            assert lookup.since("+4999") is None  # never looked up
        finally:
            lookup.close()

    async def test_a_hold_accepted_within_the_minute_shows_on_the_next_call(
        self, tmp_path: Path
    ) -> None:
        journal_path, state = tmp_path / "j.sqlite", tmp_path / "state.sqlite"
        SqliteJournal(journal_path).close()
        lookup = OpenCallbacks(
            lambda: SqliteJournal(journal_path),
            lambda: SqliteVirtualHoldStore(state),
            BERLIN,
            clock=lambda: NOW,
        )
        caller = "+494407123452"
        try:
            # First call: nothing open, and that is kept for a minute.
            lookup.prefetch(caller)
            await lookup.wait(caller)
            assert lookup.note(caller) is None
            h = offered(
                node="n1", call_id="v2", tenant="wardenburg", queue="q", priority=0,
                caller=caller, arrived_at=NOW, at=NOW,
            )  # fmt: skip
            lookup.hold_changed(h)  # only offered: nothing changes for the note
            with SqliteVirtualHoldStore(state) as store:
                h = step(
                    h, VHoldEvent.ACCEPTED, at=NOW, policy=VirtualHoldPolicy(),
                    number=check_callback_number(caller),
                )  # fmt: skip
                store.save(h)
            lookup.prefetch(caller)  # calls again: the cached "none" still stands
            await lookup.wait(caller)
            assert lookup.note(caller) is None
            lookup.hold_changed(h)  # the virtual-hold service saved the acceptance
            lookup.prefetch(caller)
            await lookup.wait(caller)
            assert lookup.note(caller) == "offener Rückruf vom Do 10:00"
        finally:
            lookup.close()

    async def test_an_agents_ticket_within_the_minute_shows_on_the_next_call(
        self, tmp_path: Path
    ) -> None:
        journal_path = tmp_path / "j.sqlite"
        with SqliteJournal(journal_path) as journal:
            journal.upsert([entry("t2", arrived_at=NOW.astimezone(UTC), caller=TICKET_CALLER)])
        lookup = OpenCallbacks(lambda: SqliteJournal(journal_path), None, BERLIN, clock=lambda: NOW)
        try:
            lookup.prefetch(TICKET_CALLER)
            await lookup.wait(TICKET_CALLER)
            assert lookup.note(TICKET_CALLER) is None
            with SqliteJournal(journal_path) as journal:
                journal.set_disposition(
                    "n1", "t2", "callback", "anna", "", HOLD_NUMBER, NOW + timedelta(days=1),
                    NOW.astimezone(UTC),
                )  # fmt: skip
            lookup.forget(TICKET_CALLER, HOLD_NUMBER)  # the desk wrote the ticket
            for number in (TICKET_CALLER, HOLD_NUMBER):
                lookup.prefetch(number)
                await lookup.wait(number)
                assert lookup.note(number) == "offener Rückruf vom Do 10:00"
        finally:
            lookup.close()

    async def test_a_broken_store_means_no_note(self) -> None:
        def broken() -> SqliteJournal:
            raise OSError("database gone")

        lookup = OpenCallbacks(broken, None, BERLIN, clock=lambda: NOW)
        lookup.prefetch(TICKET_CALLER)
        await lookup.wait(TICKET_CALLER)
        assert lookup.note(TICKET_CALLER) is None
        lookup.close()
