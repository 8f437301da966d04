"""The ``route`` script over real TCP, against a fake Asterisk.

:class:`FakeAsterisk` plays Asterisk's side of one FastAGI connection: it sends
the environment, reads our commands with the model of Asterisk's argument
parser, and answers like ``res_agi.c`` does. The real Asterisk path is covered
in ``tests/integration/test_entry_points.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from pbxbridge.adapters import callflow, dialplan
from pbxbridge.adapters.agi import AgiLimits, AgiRouter, AgiServer
from pbxbridge.adapters.agi import router as agi_router
from pbxbridge.adapters.agi.router import tag_variables
from pbxbridge.adapters.ari.router import StasisRouter
from pbxbridge.config import load_rules
from pbxbridge.core import Override, OverrideState
from pbxbridge.core.models import Call, ClosedHandling, ClosedThen, Decision
from pbxbridge.core.routing import route
from pbxbridge.core.rules import Rules
from tests.unit.test_agi_protocol import asterisk_parse_args
from tests.unit.test_ari_router import FakeAri

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
WEDNESDAY_10 = datetime(2026, 11, 25, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
DEST = ("PBXBRIDGE_DEST_CONTEXT", "PBXBRIDGE_DEST_EXTEN", "PBXBRIDGE_DEST_PRIORITY")


def asterisk_env(
    uniqueid: str = "1764099000.1",
    extension: str = "+494407730",
    callerid: str = "04411234567",
    name: str = "Jörg Müller",
    script: str = "route",
    **extra: str,
) -> dict[str, str]:
    """An environment as Asterisk 22 sends it."""
    return {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1:4573/{script}",
        "agi_channel": f"PJSIP/trunk-agi-{uniqueid}",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.10.1",
        "agi_callerid": callerid,
        "agi_calleridname": name,
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": extension,
        "agi_rdnis": "unknown",
        "agi_context": "pbxbridge-agi",
        "agi_extension": extension,
        "agi_priority": "5",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "139785627473600",
        **extra,
    }


def render_env(env: dict[str, str]) -> bytes:
    return "".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n"


@dataclasses.dataclass
class FakeAsterisk:
    """Asterisk's side of one FastAGI connection.

    Attributes:
        port: The AGI server's port.
        env: The environment to send.
        channel: Channel variables GET VARIABLE answers from.
        digits: What GET DATA returns ("" = timeout).
        reply: Overrides: command prefix -> raw response line (e.g. "HANGUP").
        commands: Every command line received.
        set: Variables set with SET VARIABLE, as Asterisk stored them.
        set_order: Their names in order.
        closed_by_server: The server closed the connection (normal end).
    """

    port: int
    env: dict[str, str] = dataclasses.field(default_factory=asterisk_env)
    channel: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"CALLERID(num-pres)": "allowed_not_screened"}
    )
    digits: str = ""
    reply: dict[str, str] = dataclasses.field(default_factory=dict)
    commands: list[str] = dataclasses.field(default_factory=list)
    set: dict[str, str] = dataclasses.field(default_factory=dict)
    set_order: list[str] = dataclasses.field(default_factory=list)
    closed_by_server: bool = False

    async def call(self, wait_s: float = 5.0) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(render_env(self.env))
        try:
            while True:
                raw = await asyncio.wait_for(reader.readline(), wait_s)
                if not raw:
                    self.closed_by_server = True
                    break
                command = raw.decode().removesuffix("\n")
                self.commands.append(command)
                writer.write((self.respond(command) + "\n").encode())
                await writer.drain()
        except ConnectionError:
            self.closed_by_server = True
        finally:
            writer.close()
        return self

    def respond(self, command: str) -> str:
        for prefix, line in self.reply.items():
            if command.startswith(prefix):
                return line
        words = asterisk_parse_args(command)
        verb = " ".join(words[:2]).upper()
        if verb == "GET VARIABLE" and len(words) == 3:
            value = self.channel.get(words[2])
            return "200 result=0" if value is None else f"200 result=1 ({value})"
        if words[:3] == ["GET", "FULL", "VARIABLE"] and len(words) == 4:
            # One pass, like Asterisk: substituted values are not evaluated again.
            value = re.sub(r"\$\{([^}]*)\}", lambda m: self.channel.get(m.group(1), ""), words[3])
            return f"200 result=1 ({value})"
        if words[:2] == ["EXEC", "MSet"] and len(words) == 3:
            for pair in words[2].split(","):
                name, _, value = pair.partition("=")
                self.set[name] = value
                self.set_order.append(name)
            return "200 result=0"
        if verb == "SET VARIABLE" and len(words) == 4:
            self.set[words[2]] = words[3]
            self.set_order.append(words[2])
            return "200 result=1"
        if words == ["EXEC", "Answer", ",i"]:  # answer without waiting for media
            return "200 result=0"
        if words[0] == "EXEC":
            return "200 result=-2"  # no such application
        if verb == "GET DATA" and len(words) == 5:
            return f"200 result={self.digits}" + ("" if self.digits else " (timeout)")
        return "520-Invalid command syntax.  Proper usage follows:"

    @property
    def tags(self) -> dict[str, str]:
        """The tags as the dialplan sees them ([pbxbridge-tags] unpacks), no destination."""
        tags = {k: v for k, v in self.set.items() if k not in DEST}
        packed = tags.pop(dialplan.PACKED_VARIABLE, None)
        if packed is not None:
            version, *values = packed.split("|")
            assert version == dialplan.PACKED_VERSION
            tags.update(zip(dialplan.PACKED_FIELDS, values, strict=True))
        return tags

    @property
    def destination(self) -> tuple[str, str, str] | None:
        if "PBXBRIDGE_DEST_CONTEXT" not in self.set:
            return None
        return (
            self.set["PBXBRIDGE_DEST_CONTEXT"],
            self.set["PBXBRIDGE_DEST_EXTEN"],
            self.set["PBXBRIDGE_DEST_PRIORITY"],
        )


@dataclasses.dataclass
class Harness:
    server: AgiServer
    router: AgiRouter
    observed: list[tuple[str, Decision]]

    def fake(self, **kw: object) -> FakeAsterisk:
        return FakeAsterisk(self.server.port, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(EXAMPLE)[0]


@pytest.fixture
async def agi(rules: Rules) -> AsyncIterator[Harness]:
    async with harness(rules) as h:
        yield h


class harness:  # lower case: used like a function (async with harness(...))
    """An AGI server with the real router on a free port."""

    def __init__(
        self,
        rules: Rules,
        overrides: list[Override] | None = None,
        limits: AgiLimits | None = None,
        rules_source: Callable[[], Rules] | None = None,
        observer: Callable[[str, Decision], None] | None = None,
    ) -> None:
        self.observed: list[tuple[str, Decision]] = []

        def observe(call_id: str, decision: Decision) -> None:
            self.observed.append((call_id, decision))
            if observer is not None:
                observer(call_id, decision)

        self.router = AgiRouter(
            rules_source or (lambda: rules),
            lambda: overrides or [],
            clock=lambda: WEDNESDAY_10,
            on_decision=observe,
        )
        self.server = AgiServer(
            "127.0.0.1",
            0,
            {"route": self.router.route},
            limits or AgiLimits(env_timeout_s=2.0, command_timeout_s=2.0),
        )

    async def __aenter__(self) -> Harness:
        assert await self.server.start()
        return Harness(self.server, self.router, self.observed)

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(2.0)


class TestOpenCall:
    async def test_tags_then_destination_last(self, agi: Harness) -> None:
        fake = await agi.fake().call()
        tags = fake.tags
        assert tags["PBXBRIDGE_TENANT"] == "wardenburg"
        assert tags["PBXBRIDGE_TENANT_NAME"] == "Gemeinde Wardenburg"
        assert tags["CHANNEL(accountcode)"] == "wardenburg"
        assert tags["CALLERID(name)"] == "WAR: Jörg Müller"
        assert tags["QUEUE_PRIO"] == "5"
        assert tags["PBXBRIDGE_QUEUE"] == "servicecenter"
        assert tags["PBXBRIDGE_WHISPER"] == "custom/wardenburg"
        assert tags["PBXBRIDGE_VIA_115"] == "0"
        assert tags["PBXBRIDGE_DID"] == "+494407730"
        assert tags["PBXBRIDGE_CALLER"] == "+494411234567"
        assert fake.destination == ("pbxbridge-queue", "s", "1")
        # One packed variable carries the tags, as on the Stasis path; the
        # destination comes last: a session that breaks earlier leaves none.
        assert fake.set_order == [
            "PBXBRIDGE_DECISION",
            "PBXBRIDGE_DEST_EXTEN",
            "PBXBRIDGE_DEST_PRIORITY",
            "PBXBRIDGE_DEST_CONTEXT",
        ]
        # Three round trips: what the environment lacks, the packed tags, the
        # destination.
        assert fake.commands == [
            'GET FULL VARIABLE "${CALLERID(num-pres)}|${FROM_DID}"',
            fake.commands[1],
            'EXEC MSet "PBXBRIDGE_DEST_EXTEN=s,PBXBRIDGE_DEST_PRIORITY=1,'
            'PBXBRIDGE_DEST_CONTEXT=pbxbridge-queue"',
        ]
        assert fake.commands[1].startswith('SET VARIABLE PBXBRIDGE_DECISION "1|wardenburg|')
        assert fake.closed_by_server
        assert agi.router.stats.routed == 1
        ((call_id, decision),) = agi.observed
        assert call_id == "1764099000.1" and decision.tenant == "wardenburg"

    async def test_routed_log_line(self, agi: Harness) -> None:
        with capture_logs() as logs:
            await agi.fake().call()
        (routed,) = [e for e in logs if e["event"] == "call.routed"]
        assert routed["entry"] == "agi"
        assert routed["call_id"] == "1764099000.1"
        assert routed["tenant"] == "wardenburg" and routed["action"] == "queue"
        assert routed["caller"] == "+4944…67"

    async def test_from_did_wins_over_extension(self, agi: Harness) -> None:
        # A FreePBX custom destination: extension "s", the DID in FROM_DID.
        fake = agi.fake(env=asterisk_env(extension="s"))
        fake.channel["FROM_DID"] = "+49 441 235-0"
        await fake.call()
        assert fake.tags["PBXBRIDGE_TENANT"] == "oldenburg"

    async def test_empty_from_did_falls_back_to_extension(self, agi: Harness) -> None:
        fake = agi.fake()
        fake.channel["FROM_DID"] = ""
        await fake.call()
        assert fake.tags["PBXBRIDGE_TENANT"] == "wardenburg"

    async def test_did_with_blanks_parentheses_and_commas_reaches_the_core_whole(
        self, agi: Harness
    ) -> None:
        fake = agi.fake(env=asterisk_env(extension="s"))
        fake.channel["FROM_DID"] = "04407 (73), 0"
        await fake.call()
        assert fake.tags["PBXBRIDGE_TENANT"] == "oldenburg"  # not a known DID
        assert fake.tags["PBXBRIDGE_DID"] == "04407 (73) 0"  # sanitised for the dialplan

    async def test_hostile_from_did_is_data_not_an_expression(self, agi: Harness) -> None:
        fake = agi.fake(env=asterisk_env(extension="s"))
        fake.channel["FROM_DID"] = "+494407730|${CALLERID(num-pres)}"
        await fake.call()
        # Split at the first "|" only: the whole DID reached the core, which
        # did not recognise it; nothing in it was evaluated.
        assert fake.tags["PBXBRIDGE_TENANT"] == "oldenburg"
        assert "allowed" not in fake.tags["PBXBRIDGE_DID"]

    async def test_restricted_presentation_hides_caller(self, agi: Harness) -> None:
        fake = agi.fake()
        fake.channel["CALLERID(num-pres)"] = "prohib_passed_screen"
        await fake.call()
        assert fake.tags["PBXBRIDGE_CALLER"] == ""

    async def test_absent_name_asks_the_channel(self, agi: Harness) -> None:
        fake = agi.fake(env=asterisk_env(name="unknown", callerid="anonymous"))
        await fake.call()
        assert "GET VARIABLE CALLERID(name)" in fake.commands
        assert fake.tags["CALLERID(name)"] == "WAR"
        assert fake.tags["PBXBRIDGE_CALLER"] == ""

    async def test_caller_really_named_unknown(self, agi: Harness) -> None:
        fake = agi.fake(env=asterisk_env(name="unknown"))
        fake.channel["CALLERID(name)"] = "unknown"
        await fake.call()
        assert fake.tags["CALLERID(name)"] == "WAR: unknown"

    @pytest.mark.parametrize(
        "name",
        [
            '"x",${EVAL(${a})};\\n|y' + "z" * 400,
            'Evil" <sip:x@y>;tag=1',
            "J\ufffdrg M\ufffdller",
            "a\\",
        ],
    )
    async def test_hostile_name_never_reaches_tags(self, agi: Harness, name: str) -> None:
        fake = await agi.fake(env=asterisk_env(name=name)).call()
        assert fake.tags["PBXBRIDGE_TENANT"] == "wardenburg"
        for value in fake.tags.values():
            assert not set(value) & set('",;${}|\\\n\ufffd')
            assert len(value) <= 80

    async def test_latin1_name_bytes(self, agi: Harness) -> None:
        # Asterisk passes the carrier's bytes through: invalid UTF-8 must not
        # break the session.
        env = asterisk_env()
        raw = render_env(env).replace("Jörg Müller".encode(), "Jörg Müller".encode("latin-1"))
        reader, writer = await asyncio.open_connection("127.0.0.1", agi.server.port)
        writer.write(raw)
        fake = agi.fake()
        while line := await asyncio.wait_for(reader.readline(), 5):
            writer.write((fake.respond(line.decode().strip()) + "\n").encode())
        writer.close()
        shown = fake.tags["CALLERID(name)"]
        assert shown.startswith("WAR: J") and shown.endswith("ller") and "\ufffd" not in shown
        assert fake.destination == ("pbxbridge-queue", "s", "1")

    async def test_override_closes(self, rules: Rules) -> None:
        ov = Override(
            scope="wardenburg",
            state=OverrideState.CLOSED,
            reason="Unwetter",
            set_at=datetime(2026, 11, 25, 8, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        )
        async with harness(rules, [ov]) as h:
            fake = await h.fake().call()
        assert fake.destination == ("pbxbridge-closed", "s", "1")
        assert fake.tags["PBXBRIDGE_CLOSED_THEN"] == "hangup"
        assert fake.tags["PBXBRIDGE_CLOSED_ANNOUNCE"] == "custom/wardenburg-closed"


def effective(variables: dict[str, str]) -> dict[str, str]:
    """The tags a channel ends up with in the dialplan, whatever their transport.

    The Stasis path may send them packed into one variable that the dialplan's
    [pbxbridge-tags] unpacks; FastAGI sets them one by one. Empty means unset
    to the dialplan, so empty values are left out.
    """
    packed = getattr(dialplan, "PACKED_VARIABLE", None)
    if packed is not None and packed in variables:
        version, *values = variables[packed].split("|")
        assert version == dialplan.PACKED_VERSION
        variables = dict(zip(dialplan.PACKED_FIELDS, values, strict=True))
    return {k: v for k, v in variables.items() if v}


class TestParityWithStasis:
    """Both entry points tag a call identically (the shared matrix, in fast)."""

    CALLS = (
        ("044077300", "04411234567", "Jörg Müller", "allowed"),
        ("+494412350", "+4915112345678", "", "allowed"),
        ("+498001234", "anonymous", "", "prohib"),
        ("115", "04407555123", "x", "allowed"),
        ("s", "unknown", "${EVAL(x)}", "prohib_not_screened"),
        ("04407 73,0", "0441 1234567", 'Evil" <sip:x@y>;tag=1', "allowed"),
    )

    @pytest.mark.parametrize(("did", "number", "name", "pres"), CALLS)
    async def test_same_variables(
        self, agi: Harness, rules: Rules, did: str, number: str, name: str, pres: str
    ) -> None:
        fake = agi.fake(env=asterisk_env(extension="s", callerid=number, name=name or "x"))
        fake.channel.update({"FROM_DID": did, "CALLERID(num-pres)": pres})
        await fake.call()

        ari = FakeAri()
        stasis = StasisRouter(ari, lambda: rules, lambda: [], clock=lambda: WEDNESDAY_10)
        await stasis.handle(
            {
                "type": "StasisStart",
                "args": [pres, did],
                "channel": {
                    "id": "c1",
                    "caller": {"number": number, "name": name or "x"},
                    "dialplan": {"exten": "s"},
                },
            }
        )
        assert await stasis.drain(2)
        assert effective(fake.tags) == effective(ari.variables["c1"])
        # Always written, even empty: the caller's own name must never survive.
        assert "CALLERID(name)" in fake.tags
        context, exten, priority = ari.continued("c1") or ("", "", 0)
        assert fake.destination == (context, exten, str(priority))


class TestMenu:
    async def test_digit_chooses_tenant(self, agi: Harness) -> None:
        fake = agi.fake(env=asterisk_env(extension="115", callerid="0171 1234567"), digits="2")
        await fake.call()
        answer = 'EXEC Answer ",i"'
        assert answer in fake.commands
        (get_data,) = [c for c in fake.commands if c.startswith("GET DATA")]
        assert asterisk_parse_args(get_data)[2:] == ["custom/115-choose", "5000", "1"]
        assert fake.commands.index(answer) < fake.commands.index(get_data)
        assert fake.tags["PBXBRIDGE_TENANT"] == "wardenburg"
        assert fake.tags["PBXBRIDGE_VIA_115"] == "1"
        assert agi.router.stats.menus == 1

    async def test_no_digit_takes_default(self, agi: Harness) -> None:
        fake = await agi.fake(env=asterisk_env(extension="115", callerid="0171 1234567")).call()
        assert fake.tags["PBXBRIDGE_TENANT"] == "oldenburg"
        assert fake.tags["PBXBRIDGE_VIA_115"] == "1"
        assert fake.destination == ("pbxbridge-queue", "s", "1")
        assert "no digit pressed" in " ".join(agi.observed[0][1].reasons)

    async def test_hangup_during_menu_sets_nothing(self, agi: Harness) -> None:
        fake = agi.fake(
            env=asterisk_env(extension="115", callerid="0171 1234567"),
            reply={"GET DATA": "200 result=-1"},
        )
        with capture_logs() as logs:
            await fake.call()
        assert fake.set == {}
        assert agi.router.stats.gone == 1 and agi.router.stats.routed == 0
        assert not agi.observed
        assert any(e["event"] == "call.gone" and e["entry"] == "agi" for e in logs)

    async def test_answer_failure_is_a_hangup(self, agi: Harness) -> None:
        fake = agi.fake(
            env=asterisk_env(extension="115", callerid="0171 1234567"),
            reply={"EXEC Answer": "200 result=-1"},
        )
        await fake.call()
        assert fake.set == {} and agi.router.stats.gone == 1
        assert not any(c.startswith("GET DATA") for c in fake.commands)

    async def test_hangup_line_sets_nothing(self, agi: Harness) -> None:
        fake = agi.fake(
            env=asterisk_env(extension="115", callerid="0171 1234567"), reply={"GET DATA": "HANGUP"}
        )
        await fake.call()
        assert fake.set == {}
        assert agi.router.stats.gone == 1


class TestTagTransport:
    def test_packed_unless_quoting_would_change_it(self, rules: Rules) -> None:
        decision = route(
            Call(did="+494407730", caller="04411234567", caller_name="Jörg"),
            rules,
            WEDNESDAY_10,
            [],
        )
        assert list(tag_variables(decision)) == ["PBXBRIDGE_DECISION"]
        # A value too long for one quoted AGI word: one variable each instead.
        huge = dataclasses.replace(
            decision, closed=ClosedHandling(then=ClosedThen.HANGUP, announce="custom/" + "a" * 1500)
        )
        variables = tag_variables(huge)
        assert "PBXBRIDGE_DECISION" not in variables
        assert variables["PBXBRIDGE_TENANT"] == "wardenburg"
        assert variables["PBXBRIDGE_CLOSED_ANNOUNCE"].endswith("a" * 100)


class TestDestination:
    async def test_unusual_destination_falls_back_to_set_variable(
        self, agi: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(callflow, "destination", lambda d: ("odd,context", "s", 1))
        fake = await agi.fake().call()
        assert not any(c.startswith("EXEC MSet") for c in fake.commands)
        assert fake.destination == ("odd,context", "s", "1")
        assert fake.set_order[-1] == "PBXBRIDGE_DEST_CONTEXT"


class TestFailures:
    async def test_dead_channel_is_gone(self, agi: Harness) -> None:
        fake = agi.fake(
            reply={
                "SET VARIABLE PBXBRIDGE_DECISION ": (
                    "511 Command Not Permitted on a dead channel or intercept routine"
                )
            }
        )
        await fake.call()
        assert agi.router.stats.gone == 1
        assert fake.destination is None

    async def test_refused_command_leaves_no_destination(self, agi: Harness) -> None:
        fake = agi.fake(reply={"EXEC MSet": "510 Invalid or unknown command"})
        with capture_logs() as logs:
            await fake.call()
        assert fake.destination is None
        assert "PBXBRIDGE_DECISION" in fake.set  # tagging had begun
        assert agi.router.stats.failed == 1
        assert not agi.observed
        (fault,) = [e for e in logs if e["event"] == "agi.command_failed"]
        assert fault["call_id"] == "1764099000.1"
        assert agi.server.stats.faults == {"command_failed": 1}

    async def test_core_failure_sets_nothing(self, rules: Rules) -> None:
        def broken() -> Rules:
            raise RuntimeError("rules unavailable")

        async with harness(rules, rules_source=broken) as h:
            with capture_logs() as logs:
                fake = await h.fake().call()
            assert fake.set == {}
            assert fake.closed_by_server
            assert h.router.stats.failed == 1
        assert any(e["event"] == "call.route_failed" for e in logs)

    async def test_observer_failure_does_not_stop_routing(self, rules: Rules) -> None:
        def explode(call_id: str, decision: Decision) -> None:
            raise RuntimeError("pop broker gone")

        async with harness(rules, observer=explode) as h:
            with capture_logs() as logs:
                fake = await h.fake().call()
        assert fake.destination == ("pbxbridge-queue", "s", "1")
        assert any(e["event"] == "call.observer_failed" for e in logs)

    async def test_garbage_response_is_a_protocol_error(self, agi: Harness) -> None:
        fake = agi.fake(reply={"GET FULL VARIABLE": "hello"})
        with capture_logs() as logs:
            await fake.call()
        assert fake.set == {}
        assert [e["event"] for e in logs if e["event"].startswith("agi.")] == ["agi.protocol_error"]

    async def test_many_calls_at_once(self, agi: Harness) -> None:
        fakes = [agi.fake(env=asterisk_env(uniqueid=f"1764099000.{n}")) for n in range(200)]
        await asyncio.gather(*(f.call() for f in fakes))
        assert all(f.destination == ("pbxbridge-queue", "s", "1") for f in fakes)
        assert agi.router.stats.routed == 200
        assert {cid for cid, _ in agi.observed} == {f"1764099000.{n}" for n in range(200)}


class TestSharedCallFlow:
    """The shared procedure's safety, seen from the FastAGI side: a fault in any
    step closes the session without a destination (the dialplan's fallback)."""

    async def test_packing_raises(self, agi: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        def broken(decision: Decision) -> dict[str, str]:
            raise ValueError("cannot pack")

        monkeypatch.setattr(agi_router, "tag_variables", broken)
        fake = await agi.fake().call()
        assert fake.destination is None and fake.closed_by_server
        assert agi.router.stats.failed == 1
        assert not agi.observed

    async def test_rules_raise_only_after_the_menu(self, rules: Rules) -> None:
        reads = 0

        def second_fails() -> Rules:
            nonlocal reads
            reads += 1
            if reads > 1:
                raise KeyError("menu option")
            return rules

        async with harness(rules, rules_source=second_fails) as h:
            fake = h.fake(env=asterisk_env(extension="115", callerid="0171 1234567"), digits="1")
            await fake.call()
            assert fake.set == {} and fake.closed_by_server
            assert h.router.stats.failed == 1 and h.router.stats.menus == 1

    async def test_menu_timeout_is_cut_to_fit_the_bound(self, rules: Rules) -> None:
        menu_rules = load_rules(EXAMPLE)[0]
        svc = menu_rules.service_115
        assert svc is not None and svc.otherwise_menu is not None
        object.__setattr__(svc.otherwise_menu, "timeout", 30.0)
        async with harness(menu_rules) as h:
            fake = await h.fake(env=asterisk_env(extension="115", callerid="0171 1234567")).call()
        (get_data,) = [c for c in fake.commands if c.startswith("GET DATA")]
        # 10 s bound, 1 s kept for tagging: the rules' 30 s become 9 s.
        assert asterisk_parse_args(get_data)[2:] == ["custom/115-choose", "9000", "1"]
        assert fake.tags["PBXBRIDGE_TENANT"] == "oldenburg"

    async def test_same_counters_as_the_stasis_router(self, agi: Harness) -> None:
        fake_ari = FakeAri()
        stasis = StasisRouter(fake_ari, lambda: load_rules(EXAMPLE)[0], lambda: [])
        assert type(agi.router.stats) is type(stasis.stats)
