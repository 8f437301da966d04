"""The sans-I/O FastAGI parser and command builders, with hypothesis fuzzing.

``asterisk_parse_args`` models how Asterisk's ``res_agi.c`` splits a command
line into words; the fuzz tests prove that whatever value we quote, Asterisk
reads back exactly one word holding the (cleaned) value.
"""

from __future__ import annotations

import contextlib
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pbxbridge.adapters.agi.protocol import (
    AGI_COMMAND_MAX_BYTES,
    MAX_ENV_LINES,
    MAX_VALUE_BYTES,
    AgiEnv,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiResponse,
    encode_command,
    exec_command,
    get_data_command,
    get_full_variable_command,
    get_variable_command,
    parse_environment,
    parse_response,
    quote_value,
    sanitised,
    set_variable_command,
)

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def asterisk_parse_args(line: str) -> list[str]:
    """Split a command line into words the way Asterisk's parse_args() does.

    Blanks and tabs end a word outside double quotes; a double quote toggles
    quoting (and starts a word when it comes after a blank); a backslash makes
    the next character literal. Nothing else is special.
    """
    words: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for char in line:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and current is None:
                current = []
            continue
        if char in " \t" and not quoted and not escaped:
            if current is not None:
                words.append("".join(current))
                current = None
            continue
        if char == "\\" and not escaped:
            escaped = True
            continue
        if current is None:
            current = []
        current.append(char)
        escaped = False
    if current is not None:
        words.append("".join(current))
    return words


ASTERISK_ENV = [
    "agi_network: yes",
    "agi_network_script: route",
    "agi_request: agi://127.0.0.1:4573/route",
    "agi_channel: PJSIP/trunk-agi-00000001",
    "agi_language: en",
    "agi_type: PJSIP",
    "agi_uniqueid: 1764099000.42",
    "agi_version: 22.10.1",
    "agi_callerid: 04407123456",
    "agi_calleridname: Jörg Müller",
    "agi_callingpres: 0",
    "agi_callingani2: 0",
    "agi_callington: 0",
    "agi_callingtns: 0",
    "agi_dnid: +494407730",
    "agi_rdnis: unknown",
    "agi_context: pbxbridge-agi",
    "agi_extension: +494407730",
    "agi_priority: 5",
    "agi_enhanced: 0.0",
    "agi_accountcode: ",
    "agi_threadid: 139785627473600",
]


class TestParseEnvironment:
    def test_asterisk_environment(self) -> None:
        env = parse_environment(ASTERISK_ENV)
        assert env.script == "route"
        assert env.uniqueid == "1764099000.42"
        assert env.channel == "PJSIP/trunk-agi-00000001"
        assert env.extension == "+494407730"
        assert env.context == "pbxbridge-agi"
        assert env.callerid == "04407123456"
        assert env.calleridname == "Jörg Müller"
        assert env.callingpres == 0
        assert env.args == ()
        assert env.raw["agi_accountcode"] == ""

    def test_arguments_in_order(self) -> None:
        env = parse_environment([*ASTERISK_ENV, "agi_arg_2: b c", "agi_arg_1: a"])
        assert env.args == ("a", "b c")

    def test_script_from_request_when_network_script_missing(self) -> None:
        lines = [ln for ln in ASTERISK_ENV if not ln.startswith("agi_network_script")]
        lines = [ln.replace("4573/route", "4573/route/?x=1") for ln in lines]
        assert parse_environment(lines).script == "route"

    def test_crlf_tolerated(self) -> None:
        env = parse_environment([ln + "\r" for ln in ASTERISK_ENV])
        assert env.uniqueid == "1764099000.42"
        assert env.script == "route"

    def test_value_may_hold_colons_and_blanks(self) -> None:
        env = parse_environment(
            [*ASTERISK_ENV[:9], "agi_calleridname: a: b  c ", *ASTERISK_ENV[10:]]
        )
        assert env.calleridname == "a: b  c "

    @pytest.mark.parametrize(
        ("lines", "message"),
        [
            ([], "agi_uniqueid missing"),
            (["hello world"], "not 'agi_<name>: <value>'"),
            (["GET / HTTP/1.1", "Host: x"], "not 'agi_<name>: <value>'"),
            (["Host: x"], "bad key"),
            ([*ASTERISK_ENV, "agi_uniqueid: 2"], "given twice"),
            ([ln for ln in ASTERISK_ENV if "uniqueid" not in ln], "agi_uniqueid missing"),
            ([ln for ln in ASTERISK_ENV if "agi_channel" not in ln], "agi_channel missing"),
            (
                [ln for ln in ASTERISK_ENV if "network_script" not in ln and "request" not in ln],
                "no script",
            ),
            ([*ASTERISK_ENV, "agi_arg_2: x"], "numbered 1..n"),
            (["agi_network: no", *ASTERISK_ENV[1:]], "not 'yes'"),
            (["agi_\x00: x", *ASTERISK_ENV], "bad key"),
            (ASTERISK_ENV + [f"agi_x{i}: y" for i in range(MAX_ENV_LINES)], "lines"),
            ([*ASTERISK_ENV, "agi_big: " + "x" * 70_000], "bytes"),
        ],
        ids=[
            "empty",
            "garbage",
            "http",
            "foreign-key",
            "duplicate",
            "no-uniqueid",
            "no-channel",
            "no-script",
            "arg-gap",
            "network-no",
            "nul-key",
            "too-many-lines",
            "too-many-bytes",
        ],
    )
    def test_malformed(self, lines: list[str], message: str) -> None:
        with pytest.raises(AgiProtocolError, match=message):
            parse_environment(lines)

    def test_callingpres_not_a_number(self) -> None:
        lines = [ln if "callingpres" not in ln else "agi_callingpres: --1" for ln in ASTERISK_ENV]
        assert parse_environment(lines).callingpres is None

    @FUZZ
    @given(st.lists(st.text(max_size=200), max_size=40))
    def test_fuzz_never_raises_anything_else(self, lines: list[str]) -> None:
        try:
            env = parse_environment(lines)
        except AgiProtocolError:
            return
        assert isinstance(env, AgiEnv)
        assert env.uniqueid and env.channel and env.script

    @FUZZ
    @given(st.lists(st.sampled_from(ASTERISK_ENV) | st.text(max_size=80), max_size=40))
    def test_fuzz_near_valid(self, lines: list[str]) -> None:
        with contextlib.suppress(AgiProtocolError):
            parse_environment(lines)

    @FUZZ
    @given(
        st.dictionaries(
            st.from_regex(r"agi_[a-z0-9_]{1,20}", fullmatch=True).filter(
                lambda k: not k.startswith("agi_arg_") and k != "agi_network"
            ),
            st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=100),
            max_size=30,
        ),
        st.lists(
            st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=50), max_size=10
        ),
    )
    def test_fuzz_round_trip(self, extra: dict[str, str], args: list[str]) -> None:
        base = {"agi_uniqueid": "1.1", "agi_channel": "PJSIP/x-1", "agi_network_script": "r"}
        values = {**extra, **base}
        lines = [f"{k}: {v}" for k, v in values.items()]
        lines += [f"agi_arg_{n}: {v}" for n, v in enumerate(args, 1)]
        env = parse_environment(lines)
        for key, value in values.items():
            assert env.raw[key] == value
        assert env.args == tuple(args)


class TestParseResponse:
    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            ("200 result=1", AgiResponse(200, "1", "")),
            ("200 result=0", AgiResponse(200, "0", "")),
            ("200 result=1 (+494407730)", AgiResponse(200, "1", "+494407730")),
            ("200 result=1 ()", AgiResponse(200, "1", "")),
            ("200 result=1 (a (b) c))", AgiResponse(200, "1", "a (b) c)")),
            ("200 result=1 (allowed_not_screened)", AgiResponse(200, "1", "allowed_not_screened")),
            ("200 result=2", AgiResponse(200, "2", "")),
            ("200 result= (timeout)", AgiResponse(200, "", "timeout")),
            ("200 result=12 (timeout)", AgiResponse(200, "12", "timeout")),
            ("200 result=-1", AgiResponse(200, "-1", "")),
            ("200 result=0 endpos=8000", AgiResponse(200, "0", "endpos=8000")),
            ("200 result=1\r", AgiResponse(200, "1", "")),
            ("100 result=0 Trying...", AgiResponse(100, "", "result=0 Trying...")),
            ("510 Invalid or unknown command", AgiResponse(510, "", "Invalid or unknown command")),
            (
                "511 Command Not Permitted on a dead channel or intercept routine",
                AgiResponse(
                    511, "", "Command Not Permitted on a dead channel or intercept routine"
                ),
            ),
            (
                "520-Invalid command syntax.  Proper usage follows:",
                AgiResponse(520, "", "Invalid command syntax.  Proper usage follows:"),
            ),
            ("520 End of proper usage.", AgiResponse(520, "", "End of proper usage.")),
        ],
    )
    def test_responses(self, line: str, expected: AgiResponse) -> None:
        assert parse_response(line) == expected

    @pytest.mark.parametrize("line", ["HANGUP", "HANGUP\r", "HANGUP200 result=1"])
    def test_hangup(self, line: str) -> None:
        with pytest.raises(AgiHangup):
            parse_response(line)

    @pytest.mark.parametrize(
        "line",
        [
            "",
            "200",
            "200result=1",
            "OK",
            "200 ok",
            "999 x",
            "agi_network: yes",
            "\x00\x01",
            "2000 result=1",
        ],
    )
    def test_garbage(self, line: str) -> None:
        with pytest.raises(AgiProtocolError):
            parse_response(line)

    @FUZZ
    @given(st.text(max_size=300))
    @example("200 result=")
    @example("200 result=1 (")
    @example("200 result=1 )(")
    def test_fuzz_only_agi_errors(self, line: str) -> None:
        try:
            response = parse_response(line)
        except AgiError:
            return
        assert 100 <= response.code <= 599

    @FUZZ
    @given(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=200))
    def test_fuzz_get_variable_value_round_trip(self, value: str) -> None:
        assert parse_response(f"200 result=1 ({value})") == AgiResponse(200, "1", value)


class TestQuoting:
    @pytest.mark.parametrize(
        ("value", "stored"),
        [
            ("", ""),
            ("plain", "plain"),
            ("Gemeinde Wardenburg", "Gemeinde Wardenburg"),
            ('Evil" <sip:x@y>;tag=1', 'Evil" <sip:x@y>;tag=1'),
            ("back\\slash\\", "back\\slash\\"),
            ('\\"', '\\"'),
            ("line\nbreak\r\nEXEC System reboot", "linebreakEXEC System reboot"),
            ("nul\x00byte", "nulbyte"),
            ("tab\tbed", "tabbed"),
            ("${SET(X=1)} $[1+1]", "${SET(X=1)} $[1+1]"),
            ("J\udcf6rg", "Jrg"),
            ("Jörg Müller", "Jörg Müller"),
        ],
    )
    def test_stored_value(self, value: str, stored: str) -> None:
        command = set_variable_command("CALLERID(name)", value)
        assert asterisk_parse_args(command) == ["SET", "VARIABLE", "CALLERID(name)", stored]
        assert sanitised(value) == stored

    def test_cut_never_splits_an_escape_or_a_character(self) -> None:
        quoted = quote_value('ä"' * 1000, max_bytes=10)
        # ä and \" are two bytes each: five pieces fill the ten bytes exactly.
        assert quoted == '"ä\\"ä\\"ä"'
        assert len(quoted[1:-1].encode()) <= 10

    def test_long_value_keeps_command_below_asterisk_buffer(self) -> None:
        command = set_variable_command("PBXBRIDGE_TENANT_NAME", "\\" * 10_000)
        assert len(encode_command(command)) <= AGI_COMMAND_MAX_BYTES + 1
        (value,) = asterisk_parse_args(command)[3:]
        assert value == "\\" * (MAX_VALUE_BYTES // 2)

    @pytest.mark.parametrize(
        "name", ["", "A B", "X;Y", 'A"', "CALLERID(name) x", "1X", "FOO(a,b)", "X\n"]
    )
    def test_bad_names_refused(self, name: str) -> None:
        with pytest.raises(ValueError, match="not a plain"):
            set_variable_command(name, "v")
        with pytest.raises(ValueError, match="not a plain"):
            get_variable_command(name)

    def test_get_data(self) -> None:
        assert get_data_command("custom/115-choose", 2000, 1) == (
            'GET DATA "custom/115-choose" 2000 1'
        )
        assert get_data_command("beep", 0, 0) == 'GET DATA "beep" 1 1'
        for bad in ("../../etc/passwd", "a b", 'x"', ""):
            with pytest.raises(ValueError, match="sound file"):
                get_data_command(bad, 1, 1)

    def test_get_full_variable_and_exec(self) -> None:
        command = get_full_variable_command("${CALLERID(num-pres)}|${FROM_DID}")
        assert asterisk_parse_args(command) == [
            "GET",
            "FULL",
            "VARIABLE",
            "${CALLERID(num-pres)}|${FROM_DID}",
        ]
        assert asterisk_parse_args(exec_command("MSet", "A=1,B=2")) == ["EXEC", "MSet", "A=1,B=2"]
        assert exec_command("Answer", ",i") == 'EXEC Answer ",i"'
        for bad in ("", "Set X", "System;", "1App", 'A"'):
            with pytest.raises(ValueError, match="application"):
                exec_command(bad, "")

    def test_encode_refuses_line_breaks(self) -> None:
        for bad in ("A\nB", "A\rB", "A\x00B"):
            with pytest.raises(ValueError, match="line break"):
                encode_command(bad)
        with pytest.raises(ValueError, match="exceeds"):
            encode_command("X" * (AGI_COMMAND_MAX_BYTES + 1))

    @FUZZ
    @given(st.text(max_size=3000))
    @example('"\\\n\r\x00 \t"')
    @example("\\" * 2000)
    @example('"' * 2000)
    def test_fuzz_hostile_values_are_inert(self, value: str) -> None:
        name = "PBXBRIDGE_TENANT_NAME"
        data = encode_command(set_variable_command(name, value))
        # One line, no NUL, within Asterisk's buffer: nothing can spill into a
        # second command.
        assert data.count(b"\n") == 1 and data.endswith(b"\n")
        assert b"\r" not in data and b"\x00" not in data
        assert len(data) <= AGI_COMMAND_MAX_BYTES + 1
        # Asterisk reads exactly four words, the last being the cleaned value.
        words = asterisk_parse_args(data[:-1].decode("utf-8"))
        assert words == ["SET", "VARIABLE", name, sanitised(value)]
        # The stored value is the input without control characters, cut only
        # when its escaped form exceeds the limit.
        expected = "".join(
            c for c in value if unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp")
        )
        assert expected.startswith(sanitised(value))
        escaped = expected.replace("\\", "\\\\").replace('"', '\\"')
        if len(escaped.encode("utf-8")) <= MAX_VALUE_BYTES:
            assert sanitised(value) == expected
