"""StasisRouter against a recording fake of the ARI client (fast; the real
Asterisk path is covered in tests/integration)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from pbxbridge.adapters.ari.errors import AriError, AriNotFound, AriVariableNotFound
from pbxbridge.adapters.ari.router import StasisRouter
from pbxbridge.adapters.dialplan import PACKED_FIELDS, PACKED_VARIABLE
from pbxbridge.config import load_rules
from pbxbridge.core import Override, OverrideState
from pbxbridge.core.rules import Rules

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
WEDNESDAY_10 = datetime(2026, 11, 25, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))


class FakeAri:
    """Records REST calls; can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.variables: dict[str, dict[str, str]] = {}
        self.fail_set: BaseException | None = None
        self.app_channels: list[str] = []
        self.channels: dict[str, dict[str, Any]] = {}
        # Method name -> exception raised by it (first request only for
        # "continue", so the fallback's continue can succeed).
        self.fail: dict[str, BaseException] = {}
        self.hang: set[str] = set()  # methods that never answer
        self.connected = False  # read by the sweep only

    async def _maybe_fail(self, method: str) -> None:
        if method in self.hang:
            await asyncio.Event().wait()
        exc = self.fail.get(method)
        if exc is not None:
            if method == "continue":
                del self.fail[method]
            raise exc

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        self.calls.append(("set", (channel_id, name, value)))
        await self._maybe_fail("set")
        if self.fail_set is not None:
            raise self.fail_set
        variables = self.variables.setdefault(channel_id, {})
        variables[name] = value
        if name == PACKED_VARIABLE:
            # What [pbxbridge-tags] in the shipped dialplan does with it.
            version, *fields = value.split("|")
            assert version == "1" and len(fields) == len(PACKED_FIELDS)
            variables.update(zip(PACKED_FIELDS, fields, strict=True))

    async def get_variable(self, channel_id: str, name: str) -> str:
        value = self.variables.get(channel_id, {}).get(name)
        if value is None:
            raise AriVariableNotFound(404, "Provided variable was not found")
        return value

    async def continue_in_dialplan(
        self,
        channel_id: str,
        context: str,
        extension: str,
        priority: int = 1,
        label: str | None = None,
    ) -> None:
        self.calls.append(("continue", (channel_id, context, extension, priority)))
        await self._maybe_fail("continue")

    async def answer(self, channel_id: str) -> None:
        self.calls.append(("answer", (channel_id,)))
        await self._maybe_fail("answer")

    async def play(
        self, channel_id: str, media: str, playback_id: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(("play", (channel_id, media, playback_id)))
        await self._maybe_fail("play")
        return {"id": playback_id}

    async def stop_playback(self, playback_id: str) -> None:
        self.calls.append(("stop_playback", (playback_id,)))

    async def set_event_filter(self, allowed: Sequence[str]) -> None:
        self.calls.append(("filter", tuple(allowed)))

    async def get_application(self) -> dict[str, Any]:
        return {"channel_ids": list(self.app_channels)}

    async def get_channel(self, channel_id: str) -> dict[str, Any]:
        if channel_id not in self.channels:
            raise AriNotFound(404, "Channel not found")
        return self.channels[channel_id]

    def continued(self, channel_id: str) -> tuple[str, str, int] | None:
        for kind, args in self.calls:
            if kind == "continue" and args[0] == channel_id:
                return args[1], args[2], args[3]
        return None

    def last_continue(self, channel_id: str) -> tuple[str, str, int] | None:
        found = None
        for kind, args in self.calls:
            if kind == "continue" and args[0] == channel_id:
                found = args[1], args[2], args[3]
        return found

    def playback_id(self, channel_id: str) -> str:
        (pid,) = [a[2] for k, a in self.calls if k == "play" and a[0] == channel_id]
        return str(pid)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(EXAMPLE)[0]


def channel(
    cid: str, exten: str, number: str = "0441 1234567", name: str = "Jörg Müller"
) -> dict[str, Any]:
    return {
        "id": cid,
        "caller": {"number": number, "name": name},
        "dialplan": {"context": "pbxbridge-inbound", "exten": exten, "priority": 5},
    }


def start(cid: str, exten: str, args: list[str] | None = None, **kw: str) -> dict[str, Any]:
    return {"type": "StasisStart", "channel": channel(cid, exten, **kw), "args": args or []}


def make(rules: Rules, fake: FakeAri, overrides: list[Override] | None = None) -> StasisRouter:
    return StasisRouter(fake, lambda: rules, lambda: overrides or [], clock=lambda: WEDNESDAY_10)


class TestOpenCall:
    async def test_tags_and_continues_to_queue(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make(rules, fake)
        await router.handle(start("c1", "044077300", ["allowed_not_screened", "+494407730"]))
        assert await router.drain(2)
        tags = fake.variables["c1"]
        assert tags["PBXBRIDGE_TENANT"] == "wardenburg"
        assert tags["PBXBRIDGE_TENANT_NAME"] == "Gemeinde Wardenburg"
        assert tags["CHANNEL(accountcode)"] == "wardenburg"
        assert tags["CALLERID(name)"] == "WAR: Jörg Müller"
        assert tags["QUEUE_PRIO"] == "5"
        assert tags["PBXBRIDGE_QUEUE"] == "servicecenter"
        assert tags["PBXBRIDGE_WHISPER"] == "custom/wardenburg"
        assert tags["PBXBRIDGE_VIA_115"] == "0"
        assert tags["PBXBRIDGE_DID"] == "+494407730"
        assert fake.continued("c1") == ("pbxbridge-queue", "s", 1)
        # One request carries every tag, then the call continues.
        assert [c[0] for c in fake.calls] == ["set", "continue"]
        assert router.stats.routed == 1

    async def test_extension_is_the_did_without_args(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make(rules, fake)
        await router.handle(start("c1", "044077300"))
        await router.drain(2)
        assert fake.variables["c1"]["PBXBRIDGE_TENANT"] == "wardenburg"

    async def test_did_with_commas_is_joined_back(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make(rules, fake)
        # Asterisk splits Stasis arguments at commas; a carrier's DID may hold some.
        await router.handle(start("c1", "s", ["allowed", "04407", "73", "0"]))
        await router.drain(2)
        # The whole DID reached the core (not "04407"), which refused it as a
        # number; the tag holds it without the commas that would split arguments.
        assert fake.variables["c1"]["PBXBRIDGE_TENANT"] == "oldenburg"
        assert fake.variables["c1"]["PBXBRIDGE_DID"] == "04407730"

    async def test_duplicate_start_is_routed_once(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make(rules, fake)
        await router.handle(start("c1", "044077300"))
        await router.handle(start("c1", "044077300"))
        await router.drain(2)
        assert [c for c in fake.calls if c[0] == "continue"] == [
            ("continue", ("c1", "pbxbridge-queue", "s", 1))
        ]

    async def test_restricted_presentation_hides_caller(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make(rules, fake)
        await router.handle(start("c1", "044077300", ["prohib_passed_screen", "044077300"]))
        await router.drain(2)
        assert fake.variables["c1"]["PBXBRIDGE_CALLER"] == ""

    async def test_hostile_name_never_reaches_tags(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make(rules, fake)
        await router.handle(start("c1", "044077300", name='"x",${EVAL(${a})};\\n|y' + "z" * 400))
        await router.drain(2)
        for name, value in fake.variables["c1"].items():
            if name == PACKED_VARIABLE:
                continue  # "|" separates its fields; each field is checked below
            assert not set(value) & set('",;${}|\\\n')
            assert len(value) <= 80


class TestClosedAndOverride:
    async def test_override_closes(self, rules: Rules) -> None:
        fake = FakeAri()
        ov = Override(
            scope="wardenburg",
            state=OverrideState.CLOSED,
            reason="Unwetter",
            set_at=datetime(2026, 11, 25, 8, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        )
        router = make(rules, fake, [ov])
        await router.handle(start("c1", "044077300"))
        await router.drain(2)
        tags = fake.variables["c1"]
        assert fake.continued("c1") == ("pbxbridge-closed", "s", 1)
        assert tags["PBXBRIDGE_CLOSED_THEN"] == "hangup"
        assert tags["PBXBRIDGE_CLOSED_ANNOUNCE"] == "custom/wardenburg-closed"


class TestMenu:
    async def test_digit_during_prompt(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make(rules, fake)
        await router.handle(start("m1", "115", ["allowed", "115"], number="0171 1234567"))
        await asyncio.sleep(0.05)
        assert ("answer", ("m1",)) in fake.calls
        assert any(c[0] == "play" and c[1][1] == "sound:custom/115-choose" for c in fake.calls)
        await router.handle({"type": "ChannelDtmfReceived", "digit": "2", "channel": {"id": "m1"}})
        assert await router.drain(2)
        assert fake.variables["m1"]["PBXBRIDGE_TENANT"] == "wardenburg"
        assert fake.variables["m1"]["PBXBRIDGE_VIA_115"] == "1"
        assert any(c[0] == "stop_playback" for c in fake.calls)
        assert fake.continued("m1") == ("pbxbridge-queue", "s", 1)

    async def test_timeout_after_prompt_takes_default(self, rules: Rules) -> None:
        fake = FakeAri()
        menu_rules = load_rules(EXAMPLE)[0]
        # A short timeout keeps the test fast; the path is the same.
        svc = menu_rules.service_115
        assert svc is not None and svc.otherwise_menu is not None
        object.__setattr__(svc.otherwise_menu, "timeout", 0.2)
        router = make(menu_rules, fake)
        await router.handle(start("m2", "115", ["allowed", "115"], number=""))
        await asyncio.sleep(0.05)
        await router.handle(
            {
                "type": "PlaybackFinished",
                "playback": {"id": fake.playback_id("m2"), "target_uri": "channel:m2"},
            }
        )
        assert await router.drain(2)
        assert fake.variables["m2"]["PBXBRIDGE_TENANT"] == "oldenburg"

    async def test_hangup_during_menu_ends_it(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make(rules, fake)
        await router.handle(start("m3", "115", ["allowed", "115"], number=""))
        await asyncio.sleep(0.05)
        fake.fail_set = AriNotFound(404, "Channel not found")
        await router.handle({"type": "StasisEnd", "channel": {"id": "m3"}})
        assert await router.drain(2)
        assert router.stats.gone == 1
        assert fake.continued("m3") is None


class TestFailures:
    async def test_channel_gone(self, rules: Rules) -> None:
        fake = FakeAri()
        fake.fail_set = AriNotFound(404, "Channel not found")
        router = make(rules, fake)
        await router.handle(start("c1", "044077300"))
        assert await router.drain(2)
        assert router.stats.gone == 1
        assert fake.continued("c1") is None

    async def test_server_error_sends_call_to_fallback(self, rules: Rules) -> None:
        fake = FakeAri()
        fake.fail_set = AriError(500, "boom")
        router = make(rules, fake)
        await router.handle(start("c1", "044077300"))
        assert await router.drain(2)
        assert router.stats.failed == 1
        assert fake.continued("c1") == ("pbxbridge-unrouted", "s", 1)


class TestResync:
    async def test_routes_channels_left_in_stasis(self, rules: Rules) -> None:
        fake = FakeAri()
        fake.app_channels = ["r1", "r2", "gone"]
        fake.channels = {"r1": channel("r1", "044077300"), "r2": channel("r2", "s")}
        fake.variables = {
            "r1": {"PBXBRIDGE_DID": "044077300"},
            "r2": {"PBXBRIDGE_DID": "+49 441 235-0"},
        }
        router = make(rules, fake)
        await router.resync()
        assert await router.drain(2)
        assert fake.variables["r1"]["PBXBRIDGE_TENANT"] == "wardenburg"
        assert fake.variables["r2"]["PBXBRIDGE_TENANT"] == "oldenburg"
        assert router.stats.resynced == 2
        assert (
            "filter",
            (
                "StasisStart",
                "StasisEnd",
                "ChannelDtmfReceived",
                "PlaybackFinished",
                "ApplicationReplaced",
            ),
        ) in fake.calls
        # A StasisStart for an already resynced channel arriving later is ignored
        # while it is being handled; once handled, it would be a new entry.
        assert fake.continued("r1") == ("pbxbridge-queue", "s", 1)


UNROUTED = ("pbxbridge-unrouted", "s", 1)
QUEUE = ("pbxbridge-queue", "s", 1)


def make_with(rules_source: Any, fake: FakeAri, **kw: Any) -> StasisRouter:
    return StasisRouter(fake, rules_source, lambda: [], clock=lambda: WEDNESDAY_10, **kw)


class TestNoCallLeftInStasis:
    """Whatever step fails, the call is continued to the fallback and counted."""

    async def test_malformed_channel_snapshot(self, rules: Rules) -> None:
        # Building the Call raised outside any protection before: the routing
        # task died and the caller stayed in Stasis.
        fake = FakeAri()
        router = make(rules, fake)
        event = start("f1", "044077300")
        event["channel"]["caller"] = "not an object"
        await router.handle(event)
        assert await router.drain(2)
        assert fake.continued("f1") == UNROUTED
        assert router.stats.failed == 1

    async def test_rules_raise_in_the_first_decision(self, rules: Rules) -> None:
        def broken() -> Rules:
            raise RuntimeError("rules edge case")

        fake = FakeAri()
        router = make_with(broken, fake)
        with capture_logs() as logs:
            await router.handle(start("f2", "044077300"))
            assert await router.drain(2)
        assert fake.continued("f2") == UNROUTED
        assert router.stats.failed == 1
        (failed,) = [e for e in logs if e["event"] == "call.route_failed"]
        assert failed["entry"] == "ari" and "RuntimeError" in failed["error"]

    async def test_rules_raise_only_after_the_menu(self, rules: Rules) -> None:
        calls = 0

        def second_fails() -> Rules:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise KeyError("menu option")
            return rules

        fake = FakeAri()
        router = make_with(second_fails, fake)
        await router.handle(start("f3", "115", ["allowed", "115"], number=""))
        await asyncio.sleep(0.05)
        await router.handle({"type": "ChannelDtmfReceived", "digit": "1", "channel": {"id": "f3"}})
        assert await router.drain(2)
        assert fake.continued("f3") == UNROUTED
        assert router.stats.failed == 1 and router.stats.menus == 1

    @pytest.mark.parametrize("step", ["answer", "play"])
    async def test_menu_step_raises_a_bug(self, rules: Rules, step: str) -> None:
        fake = FakeAri()
        fake.fail[step] = TypeError("bug in the menu")
        router = make(rules, fake)
        await router.handle(start("f4", "115", ["allowed", "115"], number=""))
        assert await router.drain(2)
        assert fake.continued("f4") == UNROUTED
        assert router.stats.failed == 1

    async def test_packing_raises(self, rules: Rules, monkeypatch: pytest.MonkeyPatch) -> None:
        def broken(decision: object) -> str:
            raise ValueError("cannot pack")

        monkeypatch.setattr("pbxbridge.adapters.ari.router.pack_decision", broken)
        fake = FakeAri()
        router = make(rules, fake)
        await router.handle(start("f5", "044077300"))
        assert await router.drain(2)
        assert fake.continued("f5") == UNROUTED
        assert router.stats.failed == 1

    async def test_observer_raises_call_still_routed(self, rules: Rules) -> None:
        def explode(call_id: str, decision: object) -> None:
            raise RuntimeError("pop broker gone")

        fake = FakeAri()
        router = StasisRouter(
            fake, lambda: rules, lambda: [], clock=lambda: WEDNESDAY_10, on_decision=explode
        )
        with capture_logs() as logs:
            await router.handle(start("f6", "044077300"))
            assert await router.drain(2)
        assert fake.continued("f6") == QUEUE
        assert router.stats.routed == 1
        assert any(e["event"] == "call.observer_failed" for e in logs)

    async def test_continue_raises_a_bug(self, rules: Rules) -> None:
        fake = FakeAri()
        fake.fail["continue"] = RuntimeError("bug")
        router = make(rules, fake)
        await router.handle(start("f7", "044077300"))
        assert await router.drain(2)
        assert fake.continued("f7") == QUEUE  # tried first, raised
        assert fake.last_continue("f7") == UNROUTED
        assert router.stats.failed == 1

    async def test_fallback_failing_too_is_logged_not_raised(self, rules: Rules) -> None:
        fake = FakeAri()
        fake.fail["set"] = RuntimeError("bug")
        fake.fail["continue"] = AriError(500, "down")
        router = make(rules, fake)
        with capture_logs() as logs:
            await router.handle(start("f8", "044077300"))
            assert await router.drain(2)
        assert any(e["event"] == "call.unroutable" for e in logs)
        assert router.stats.failed == 1


class TestStasisGuard:
    async def test_prompt_longer_than_the_bound(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make_with(lambda: rules, fake, stasis_max_s=0.3)
        with capture_logs() as logs:
            await router.handle(start("g1", "115", ["allowed", "115"], number=""))
            # No PlaybackFinished, no digit: the prompt "plays" for ever.
            assert await router.drain(2)
        assert fake.continued("g1") == UNROUTED
        assert ("stop_playback", (fake.playback_id("g1"),)) in fake.calls
        assert router.stats.stasis_timeouts == 1
        assert router.stats.failed == 0
        (warning,) = [e for e in logs if e["event"] == "call.stasis_timeout"]
        assert warning["log_level"] == "warning" and warning["call_id"] == "g1"

    async def test_request_that_never_answers(self, rules: Rules) -> None:
        fake = FakeAri()
        fake.hang.add("set")
        router = make_with(lambda: rules, fake, stasis_max_s=0.2)
        await router.handle(start("g2", "044077300"))
        assert await router.drain(2)
        assert fake.continued("g2") == UNROUTED
        assert router.stats.stasis_timeouts == 1

    async def test_menu_timeout_is_cut_to_fit_the_bound(self) -> None:
        menu_rules = load_rules(EXAMPLE)[0]
        svc = menu_rules.service_115
        assert svc is not None and svc.otherwise_menu is not None
        object.__setattr__(svc.otherwise_menu, "timeout", 30.0)
        fake = FakeAri()
        router = make_with(lambda: menu_rules, fake, stasis_max_s=1.5)
        await router.handle(start("g3", "115", ["allowed", "115"], number=""))
        await asyncio.sleep(0.05)
        await router.handle(
            {
                "type": "PlaybackFinished",
                "playback": {"id": fake.playback_id("g3"), "target_uri": "channel:g3"},
            }
        )
        # The default is taken ~0.5 s later, before the guard (1.5 s) fires.
        assert await router.drain(1.3)
        assert fake.variables["g3"]["PBXBRIDGE_TENANT"] == "oldenburg"
        assert fake.continued("g3") == QUEUE
        assert router.stats.stasis_timeouts == 0

    async def test_routed_call_cancels_its_guard(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make_with(lambda: rules, fake, stasis_max_s=0.2)
        await router.handle(start("g4", "044077300"))
        assert await router.drain(2)
        await asyncio.sleep(0.3)
        assert [c for c in fake.calls if c[0] == "continue"] == [("continue", ("g4", *QUEUE))]
        assert router.stats.stasis_timeouts == 0


class TestResyncWhateverTheState:
    async def test_arguments_come_back_from_the_channel(self, rules: Rules) -> None:
        # A withheld caller in the menu when the previous process died: the
        # presentation comes back from the snapshot's app_data, the menu is
        # played again after stopping the old prompt.
        fake = FakeAri()
        snapshot = channel("w1", "115", number="0171 1234567")
        snapshot["state"] = "Up"
        snapshot["dialplan"].update(app_name="Stasis", app_data="pbxbridge,prohib,115")
        fake.app_channels = ["w1"]
        fake.channels = {"w1": snapshot}
        fake.variables = {"w1": {"PBXBRIDGE_MENU_PLAYBACK": "pbxbridge-menu-w1-0ld"}}
        router = make(rules, fake)
        await router.resync()
        await asyncio.sleep(0.05)
        stop = fake.calls.index(("stop_playback", ("pbxbridge-menu-w1-0ld",)))
        assert stop < fake.calls.index(("answer", ("w1",)))
        # The new prompt has its own id, written on the channel first.
        new_id = fake.playback_id("w1")
        assert new_id != "pbxbridge-menu-w1-0ld"
        assert ("set", ("w1", "PBXBRIDGE_MENU_PLAYBACK", new_id)) in fake.calls
        await router.handle({"type": "ChannelDtmfReceived", "digit": "2", "channel": {"id": "w1"}})
        assert await router.drain(2)
        assert fake.variables["w1"]["PBXBRIDGE_TENANT"] == "wardenburg"
        assert fake.variables["w1"]["PBXBRIDGE_CALLER"] == ""  # still withheld
        assert router.stats.resynced == 1

    async def test_prompt_of_a_release_with_fixed_ids_is_stopped(self, rules: Rules) -> None:
        fake = FakeAri()
        snapshot = channel("w4", "115", number="")
        fake.app_channels = ["w4"]
        fake.channels = {"w4": snapshot}
        router = make(rules, fake)
        await router.resync()
        await asyncio.sleep(0.05)
        assert ("stop_playback", ("pbxbridge-menu-w4",)) in fake.calls
        await router.handle({"type": "StasisEnd", "channel": {"id": "w4"}})
        assert await router.drain(2)

    async def test_a_stale_prompt_ending_does_not_end_ours(self, rules: Rules) -> None:
        fake = FakeAri()
        router = make(rules, fake)
        await router.handle(start("w2", "115", ["allowed", "115"], number=""))
        await asyncio.sleep(0.05)
        await router.handle(
            {
                "type": "PlaybackFinished",
                "playback": {"id": "pbxbridge-menu-w2", "target_uri": "channel:w2"},
            }
        )
        await asyncio.sleep(0.1)
        assert router.in_progress == 1  # still waiting for our own prompt

    async def test_channel_older_than_the_bound_goes_to_the_fallback(self, rules: Rules) -> None:
        fake = FakeAri()
        snapshot = channel("w3", "044077300")
        snapshot["creationtime"] = (datetime.now(ZoneInfo("UTC")) - timedelta(seconds=30)).strftime(
            "%Y-%m-%dT%H:%M:%S.%f"
        )[:-3] + "+0000"
        fake.hang.add("set")
        fake.app_channels = ["w3"]
        fake.channels = {"w3": snapshot}
        router = make(rules, fake)
        await router.resync()
        assert await router.drain(1)
        assert fake.continued("w3") == UNROUTED
        assert router.stats.stasis_timeouts == 1


class TestSweep:
    async def test_channel_whose_stasis_start_was_lost_is_routed(self, rules: Rules) -> None:
        fake = FakeAri()
        fake.connected = True
        fake.app_channels = ["lost"]
        fake.channels = {"lost": channel("lost", "044077300")}
        router = make_with(lambda: rules, fake, stasis_max_s=0.2)
        sweeper = asyncio.create_task(router.sweep())
        try:
            # Seen in two rounds (0.1 s apart) without being routed: adopted.
            for _ in range(50):
                if fake.continued("lost"):
                    break
                await asyncio.sleep(0.02)
        finally:
            sweeper.cancel()
        assert fake.continued("lost") == QUEUE
        assert router.stats.resynced == 1

    async def test_channels_being_routed_are_left_alone(self, rules: Rules) -> None:
        fake = FakeAri()
        fake.connected = True
        fake.hang.add("set")
        router = make_with(lambda: rules, fake, stasis_max_s=0.4)
        await router.handle(start("busy", "044077300"))
        fake.app_channels = ["busy"]
        fake.channels = {"busy": channel("busy", "044077300")}
        sweeper = asyncio.create_task(router.sweep())
        try:
            await asyncio.sleep(0.3)
        finally:
            sweeper.cancel()
        assert router.stats.resynced == 0
        assert len([c for c in fake.calls if c[0] == "set"]) == 1  # routed once

    async def test_a_failing_round_does_not_end_the_sweep(self, rules: Rules) -> None:
        fake = FakeAri()
        fake.connected = True
        fake.app_channels = ["x"]  # get_channel: 404 -> skipped; then a bug:
        router = make_with(lambda: rules, fake, stasis_max_s=0.1)
        rounds = 0

        async def flaky() -> dict[str, Any]:
            nonlocal rounds
            rounds += 1
            if rounds == 2:
                raise RuntimeError("bug")
            return {"channel_ids": ["x"]}

        fake.get_application = flaky  # type: ignore[method-assign]
        sweeper = asyncio.create_task(router.sweep())
        await asyncio.sleep(0.3)
        assert not sweeper.done()
        sweeper.cancel()
        assert rounds >= 4
