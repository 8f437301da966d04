"""The per-caller lookup cache behind the repeat-caller count and the open-callback note."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pbxbridge.journal.lookup import CallerLookup


class TestCallerLookup:
    async def test_answer_known_after_the_query_and_reused_within_ttl(self) -> None:
        asked: list[str] = []

        def query(caller: str) -> int:
            asked.append(caller)
            return 3

        lookup = CallerLookup(query, ttl_s=600, failed_event="x", on_failure=lambda: None)
        assert lookup.get("+4930123") is None
        lookup.prefetch("+4930123")
        await lookup.wait("+4930123")
        assert lookup.get("+4930123") == 3
        lookup.prefetch("+4930123")  # known and fresh: no second query
        await lookup.wait("+4930123")
        assert asked == ["+4930123"]

    async def test_expired_answer_is_asked_again(self) -> None:
        answers = iter([1, 2])
        lookup = CallerLookup(
            lambda _c: next(answers), ttl_s=0, failed_event="x", on_failure=lambda: None
        )
        for expected in (1, 2):
            lookup.prefetch("+4930123")
            await lookup.wait("+4930123")
            assert lookup.get("+4930123") == expected

    async def test_withheld_callers_are_not_looked_up(self) -> None:
        def query(caller: str) -> int:
            raise AssertionError("no query for a withheld number")

        lookup = CallerLookup(query, ttl_s=60, failed_event="x", on_failure=lambda: None)
        lookup.prefetch(None)
        lookup.prefetch("")
        assert lookup.get(None) is None

    async def test_failed_query_reports_and_leaves_the_answer_unknown(self) -> None:
        failures: list[bool] = []

        def query(caller: str) -> int:
            raise OSError("connection lost")

        lookup = CallerLookup(
            query, ttl_s=60, failed_event="x", on_failure=lambda: failures.append(True)
        )
        lookup.prefetch("+4930123")
        await lookup.wait("+4930123")
        assert lookup.get("+4930123") is None
        assert failures == [True]

    async def test_cancel_stops_a_running_lookup(self) -> None:
        release = threading.Event()

        def query(caller: str) -> int:
            release.wait(5)
            return 1

        lookup = CallerLookup(query, ttl_s=60, failed_event="x", on_failure=lambda: None)
        lookup.prefetch("+4930123")
        lookup.cancel()
        release.set()
        with pytest.raises(BaseException):  # noqa: B017 - CancelledError, whatever its base
            await lookup.wait("+4930123")
        assert lookup.get("+4930123") is None

    async def test_forget_asks_again_at_once(self) -> None:
        answers = iter([None, 7])
        lookup: CallerLookup[int | None] = CallerLookup(
            lambda _c: next(answers), ttl_s=600, failed_event="x", on_failure=lambda: None
        )
        lookup.prefetch("+4930123")
        await lookup.wait("+4930123")
        lookup.prefetch("+4930123")  # "none" known and fresh: kept
        await lookup.wait("+4930123")
        assert lookup.get("+4930123") is None
        lookup.forget("+4930123")
        lookup.forget(None)  # withheld: nothing to forget
        lookup.prefetch("+4930123")
        await lookup.wait("+4930123")
        assert lookup.get("+4930123") == 7

    async def test_a_lookup_running_while_forgotten_is_not_kept(self) -> None:
        # It read the store before the change it is forgotten for, and ends last.
        started, release = threading.Event(), threading.Event()
        changed: list[bool] = []

        def query(caller: str) -> int | None:
            answer = 7 if changed else None  # what the store says now
            if not changed:
                started.set()
                release.wait(5)
            return answer

        lookup: CallerLookup[int | None] = CallerLookup(
            query, ttl_s=600, failed_event="x", on_failure=lambda: None
        )
        lookup.prefetch("+4930123")
        stale = lookup._pending["+4930123"]
        assert await asyncio.to_thread(started.wait, 5)  # it has read "none"
        changed.append(True)
        lookup.forget("+4930123")
        lookup.prefetch("+4930123")  # a fresh look-up, not waiting for the stale one
        assert lookup._pending["+4930123"] is not stale
        await lookup.wait("+4930123")
        assert lookup.get("+4930123") == 7
        release.set()
        await stale
        assert lookup.get("+4930123") == 7  # the stale "none" did not overwrite it
        assert lookup._pending == {}
