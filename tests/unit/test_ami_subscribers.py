"""AmiSubscribers: the AMI session's event names are the union of what consumers read."""

from __future__ import annotations

import pytest

from pbxbridge.adapters.ami import AmiEvent, AmiSubscribers
from pbxbridge.adapters.ami.filter import filter_actions, login_events


class TestAmiSubscribers:
    def test_names_are_the_union_in_first_added_order(self) -> None:
        subs = AmiSubscribers()
        subs.add(("QueueCallerJoin", "Hangup"), lambda e: None)
        subs.add(("QueueMemberStatus", "QueueCallerJoin"), lambda e: None)
        assert subs.names == ("QueueCallerJoin", "Hangup", "QueueMemberStatus")
        # The session then asks Asterisk for exactly these (plus what the client needs).
        assert login_events(subs.names) == "agent,call,system"
        criteria = [a["MatchCriteria"] for a in filter_actions(subs.names)]
        assert criteria[:3] == [
            "action(include),name(QueueCallerJoin)",
            "action(include),name(Hangup)",
            "action(include),name(QueueMemberStatus)",
        ]

    def test_no_consumer_no_names(self) -> None:
        assert AmiSubscribers().names == ()

    @pytest.mark.parametrize("name", ["Queue*", "Agent?", "", "Hangup\r\nAction: Originate"])
    def test_only_exact_names(self, name: str) -> None:
        with pytest.raises(ValueError, match="not an AMI event name"):
            AmiSubscribers().add((name,), lambda e: None)

    async def test_each_event_goes_to_the_consumers_of_its_name(self) -> None:
        subs = AmiSubscribers()
        tracker: list[str] = []
        board: list[str] = []

        async def board_consumer(event: AmiEvent) -> None:
            board.append(event["Uniqueid"])

        subs.add(("QueueCallerJoin", "Hangup"), lambda e: tracker.append(e["Uniqueid"]))
        subs.add(("QueueCallerJoin", "QueueMemberStatus"), board_consumer)
        await subs.handle({"Event": "QueueCallerJoin", "Uniqueid": "1.1"})
        await subs.handle({"Event": "Hangup", "Uniqueid": "1.2"})
        await subs.handle({"Event": "QueueMemberStatus", "Uniqueid": "1.3"})
        await subs.handle({"Event": "Newexten", "Uniqueid": "1.4"})
        assert tracker == ["1.1", "1.2"]
        assert board == ["1.1", "1.3"]

    async def test_a_failing_consumer_does_not_starve_the_others(self) -> None:
        subs = AmiSubscribers()
        got: list[str] = []

        def broken(event: AmiEvent) -> None:
            raise RuntimeError("boom")

        subs.add(("Hangup",), broken)
        subs.add(("Hangup",), lambda e: got.append(e["Uniqueid"]))
        await subs.handle({"Event": "Hangup", "Uniqueid": "1.1"})
        assert got == ["1.1"]

    async def test_a_consumer_added_twice_gets_an_event_once(self) -> None:
        subs = AmiSubscribers()
        got: list[str] = []

        def consumer(event: AmiEvent) -> None:
            got.append(event["Event"])

        subs.add(("Hangup",), consumer)
        subs.add(("Hangup", "AgentConnect"), consumer)
        await subs.handle({"Event": "Hangup"})
        assert got == ["Hangup"]
        assert subs.names == ("Hangup", "AgentConnect")
