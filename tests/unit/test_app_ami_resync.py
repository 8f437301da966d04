"""wiring.ami_resync waits quietly for app_queue after an Asterisk restart."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from pbxbridge.adapters.ami.errors import AmiActionFailed, AmiUnavailable
from pbxbridge.components import wiring

UNKNOWN = AmiActionFailed(
    "QueueStatus",
    "Invalid/unknown command: QueueStatus. Use Action: ListCommands to show available commands.",
)


class FakeAmi:
    """queue_status() raises the given errors in turn, then answers one waiting caller."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def queue_status(self) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        entry = SimpleNamespace(uniqueid="1700000000.1", queue="servicecenter")
        return SimpleNamespace(entries=(entry,))


class FakeTracker:
    def __init__(self) -> None:
        self.resyncs: list[dict[str, str]] = []

    def resync(self, waiting: dict[str, str]) -> None:
        self.resyncs.append(dict(waiting))


@pytest.fixture
def tracker(monkeypatch: pytest.MonkeyPatch) -> FakeTracker:
    monkeypatch.setattr(wiring, "RESYNC_BACKOFF_S", 0.001)
    return FakeTracker()


async def resync(ami: FakeAmi, tracker: FakeTracker) -> None:
    await wiring.ami_resync(ami, tracker)  # type: ignore[arg-type]


async def test_unknown_command_is_retried_with_one_warning(tracker: FakeTracker) -> None:
    ami = FakeAmi(UNKNOWN, UNKNOWN, UNKNOWN)
    with structlog.testing.capture_logs() as logs:
        await resync(ami, tracker)
    assert ami.calls == 4
    assert tracker.resyncs == [{"1700000000.1": "servicecenter"}]
    warnings = [e for e in logs if e["log_level"] in ("warning", "error", "critical")]
    assert [e["event"] for e in warnings] == ["ami.resync_retried"]
    assert not any("exc_info" in e for e in logs)


async def test_gives_up_after_the_tries_with_one_warning_and_no_exception(
    tracker: FakeTracker,
) -> None:
    ami = FakeAmi(*[UNKNOWN] * wiring.RESYNC_TRIES)
    with structlog.testing.capture_logs() as logs:
        await resync(ami, tracker)  # returns: the session goes on delivering events
    assert ami.calls == wiring.RESYNC_TRIES
    assert tracker.resyncs == []
    warnings = [e for e in logs if e["log_level"] in ("warning", "error", "critical")]
    assert [e["event"] for e in warnings] == ["ami.resync_skipped"]
    assert not any("exc_info" in e for e in logs)


async def test_first_answer_resyncs_without_a_warning(tracker: FakeTracker) -> None:
    with structlog.testing.capture_logs() as logs:
        await resync(FakeAmi(), tracker)
    assert tracker.resyncs == [{"1700000000.1": "servicecenter"}]
    assert not [e for e in logs if e["log_level"] != "debug" and e["event"] != "calls.resync"]


async def test_a_lost_connection_still_ends_the_session(tracker: FakeTracker) -> None:
    # Not app_queue loading: the client reconnects and resyncs after the next login.
    with pytest.raises(AmiUnavailable):
        await resync(FakeAmi(AmiUnavailable("connection lost")), tracker)
