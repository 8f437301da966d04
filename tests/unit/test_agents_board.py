"""The agent board: AMI member and agent events to the state a supervisor sees."""

from __future__ import annotations

from pbxbridge.tracking.agents_board import AgentBoard, AgentState, MemberStatus


def member(
    event: str, agent: str = "agent1", queue: str = "servicecenter", **fields: str
) -> dict[str, str]:
    return {
        "Event": event,
        "Queue": queue,
        "MemberName": agent,
        "Interface": f"PJSIP/{agent}",
        **fields,
    }


def state(board: AgentBoard, at: float, agent: str = "agent1") -> tuple[AgentState, float, str]:
    view = next(v for v in board.agents(at) if v.agent == agent)
    return view.state, view.since, view.reason


class TestAgentBoard:
    def test_a_queue_call_goes_ringing_talking_wrapup_and_free_after_the_wrapup(self) -> None:
        board = AgentBoard()
        assert board.event(member("QueueMemberAdded", Status="1", Paused="0"), 10.0)
        assert state(board, 10.0) == (AgentState.FREE, 10.0, "")
        board.event(member("AgentCalled"), 20.0)
        board.event(member("QueueMemberStatus", Status="6", Paused="0"), 20.1)
        assert state(board, 21.0) == (AgentState.RINGING, 20.0, "")
        board.event(member("AgentConnect", HoldTime="3"), 23.0)
        board.event(member("QueueMemberStatus", Status="2", Paused="0"), 23.05)
        assert state(board, 30.0) == (AgentState.TALKING, 23.0, "")
        # The device goes idle before AgentComplete arrives: wrap-up starts with it.
        board.event(member("QueueMemberStatus", Status="1", Paused="0"), 60.0)
        board.event(member("AgentComplete", TalkTime="37"), 60.02)
        assert state(board, 61.0) == (AgentState.WRAPUP, 60.0, "")
        assert board.wrapped_up("agent1", 75.0)
        assert state(board, 76.0) == (AgentState.FREE, 75.0, "")

    def test_a_wrapup_not_recorded_ends_after_the_limit(self) -> None:
        board = AgentBoard(wrapup_limit_s=30.0)
        board.event(member("QueueMemberAdded", Status="1", Paused="0"), 0.0)
        board.event(member("AgentConnect"), 1.0)
        board.event(member("AgentComplete"), 10.0)
        assert state(board, 39.9)[0] is AgentState.WRAPUP
        assert state(board, 45.0) == (AgentState.FREE, 40.0, "")

    def test_next_offer_ends_the_wrapup(self) -> None:
        board = AgentBoard()
        board.event(member("QueueMemberAdded", Status="1", Paused="0"), 0.0)
        board.event(member("AgentComplete"), 5.0)
        board.event(member("AgentCalled"), 8.0)
        assert state(board, 9.0)[0] is AgentState.RINGING

    def test_ring_no_answer_and_abandoned_ring_end_the_ringing(self) -> None:
        board = AgentBoard()
        board.event(member("QueueMemberAdded", Status="1", Paused="0"), 0.0)
        board.event(member("AgentCalled"), 1.0)
        board.event(member("AgentRingNoAnswer"), 5.0)
        assert state(board, 6.0) == (AgentState.FREE, 5.0, "")
        board.event(member("AgentCalled"), 7.0)
        board.event(member("QueueMemberStatus", Status="1", Paused="0"), 8.0)  # caller hung up
        assert state(board, 9.0) == (AgentState.FREE, 8.0, "")

    def test_paused_in_every_queue_with_reason_and_unpaused(self) -> None:
        board = AgentBoard()
        board.event(member("QueueMemberAdded", Status="1", Paused="0"), 0.0)
        board.event(member("QueueMemberAdded", queue="afterhours", Status="1", Paused="0"), 0.0)
        board.event(member("QueueMemberPause", Paused="1", PausedReason="Mittag"), 10.0)
        # Still offered calls from the other queue: not paused.
        assert state(board, 11.0)[0] is AgentState.FREE
        board.event(
            member("QueueMemberPause", queue="afterhours", Paused="1", PausedReason="Mittag"), 12.0
        )
        assert state(board, 13.0) == (AgentState.PAUSED, 12.0, "Mittag")
        board.event(member("QueueMemberPause", Paused="0"), 20.0)
        assert state(board, 21.0) == (AgentState.FREE, 20.0, "")

    def test_unavailable_device(self) -> None:
        board = AgentBoard()
        board.event(member("QueueMemberStatus", Status="5", Paused="0"), 3.0)
        assert state(board, 4.0) == (AgentState.UNAVAILABLE, 3.0, "")
        assert board.signed_in(4.0) == 0
        board.event(member("QueueMemberStatus", Status="1", Paused="0"), 6.0)
        assert board.signed_in(7.0) == 1

    def test_member_named_by_interface_only(self) -> None:
        board = AgentBoard()
        board.event(
            {"Event": "QueueMemberAdded", "Queue": "q", "Interface": "PJSIP/agent7", "Status": "1"},
            0.0,
        )
        assert [v.agent for v in board.agents(1.0)] == ["agent7"]

    def test_removed_from_the_last_queue_leaves_the_board(self) -> None:
        board = AgentBoard()
        board.event(member("QueueMemberAdded", Status="1"), 0.0)
        assert board.event(member("QueueMemberRemoved"), 1.0)
        assert board.agents(2.0) == []

    def test_rebuild_from_queue_status_keeps_time_in_unchanged_state_and_drops_the_gone(
        self,
    ) -> None:
        board = AgentBoard()
        board.event(member("QueueMemberAdded", Status="1", Paused="0"), 0.0)
        board.event(member("QueueMemberAdded", agent="agent2", Status="1", Paused="0"), 0.0)
        board.event(member("AgentCalled", agent="agent2"), 5.0)
        # AMI was away: agent2's call was answered meanwhile, agent3 was added, agent1 removed? no:
        board.rebuild(
            [
                MemberStatus("servicecenter", "agent2", 2, in_call=True),
                MemberStatus("servicecenter", "agent3", 1, paused=True, reason="Schulung"),
            ],
            100.0,
        )
        views = {v.agent: (v.state, v.since, v.reason) for v in board.agents(101.0)}
        assert views == {
            "agent2": (AgentState.TALKING, 100.0, ""),
            "agent3": (AgentState.PAUSED, 100.0, "Schulung"),
        }
        board.rebuild([MemberStatus("servicecenter", "agent2", 2, in_call=True)], 200.0)
        assert state(board, 201.0, "agent2") == (AgentState.TALKING, 100.0, "")

    def test_events_of_no_member_are_ignored(self) -> None:
        board = AgentBoard()
        assert not board.event({"Event": "Hangup", "Uniqueid": "1"}, 0.0)
        assert not board.event({"Event": "AgentCalled", "Queue": "q"}, 0.0)
        assert board.agents(1.0) == []

    def test_counts_list_every_state(self) -> None:
        board = AgentBoard()
        board.event(member("QueueMemberAdded", Status="1"), 0.0)
        board.event(member("QueueMemberAdded", agent="agent2", Status="6"), 0.0)
        counts = board.counts(1.0)
        assert counts[AgentState.FREE] == 1 and counts[AgentState.RINGING] == 1
        assert set(counts) == set(AgentState)
