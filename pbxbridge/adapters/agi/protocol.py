r"""The FastAGI protocol without I/O: parse what Asterisk sends, build what we send.

Everything here is a pure function of its arguments, so it can be fuzzed
(``tests/unit/test_agi_protocol.py``) and reasoned about without sockets. The
server (:mod:`pbxbridge.adapters.agi.server`) only moves bytes and enforces
time and size limits.

What Asterisk sends (``res/res_agi.c``), one ``\n``-terminated line each:

* the environment: ``agi_network: yes``, then ``agi_<name>: <value>`` lines
  (``agi_request``, ``agi_channel``, ``agi_uniqueid``, ``agi_callerid``,
  ``agi_extension``, ``agi_arg_1`` ...) and one empty line;
* after every command exactly one response: ``200 result=<r>[ (<data>)]``,
  ``100 result=0 Trying...`` (more follows), ``510 Invalid or unknown command``,
  ``511 Command Not Permitted on a dead channel ...``, or the multi-line
  ``520-Invalid command syntax.  Proper usage follows:`` ... ``520 End of proper usage.``;
* at any time, ``HANGUP`` when the caller hung up.

What we send: one command per line. Asterisk splits it into words with its
own small shell-like parser (``parse_args``): blanks and tabs separate words
outside double quotes; a backslash makes the next character literal (also a
quote or a backslash); there is no other escape. It reads at most 2047 bytes
per command, newline included (``fgets`` into ``AGI_BUF_LEN``): a longer line
is cut, and the rest is read as the NEXT COMMAND. :func:`quote_value` and the
command builders keep every value inside one quoted word and every command
under that size, so no value can ever end a command, start another one, or
change the word count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

MAX_LINE_BYTES = 8192
"""Longest line we read from Asterisk (environment or response), terminator included."""
MAX_ENV_LINES = 200
"""Most environment lines we accept (Asterisk sends ~25 plus one per AGI argument;
``AGI()`` takes at most 127 arguments)."""
MAX_ENV_BYTES = 64 * 1024
"""Most environment bytes we accept in total."""
AGI_COMMAND_MAX_BYTES = 2046
"""Longest command: Asterisk reads it with ``fgets`` into ``AGI_BUF_LEN`` (2048)
bytes, which keeps 2047 bytes including the ``\n``."""
MAX_VALUE_BYTES = 1024
"""Longest value (UTF-8 bytes, after escaping) :func:`quote_value` emits."""

_KEY = re.compile(r"agi_[a-z0-9_]{1,59}\Z")
_ARG_KEY = re.compile(r"agi_arg_([1-9][0-9]{0,2})\Z")
_RESPONSE = re.compile(r"(?P<code>[1-5][0-9]{2})(?P<sep>[ -])(?P<rest>.*)\Z", re.DOTALL)
_RESULT = re.compile(r"result=(?P<result>\S*)(?: (?P<tail>.*))?\Z", re.DOTALL)
# A variable name, optionally a dialplan function with a plain argument:
# PBXBRIDGE_TENANT, CALLERID(name), CHANNEL(accountcode), CALLERID(num-pres).
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(?:\([A-Za-z0-9_-]{0,32}\))?\Z")
# Exactly the categories Cc (C0/C1 controls and DEL: \n, \r, \0, \t ...), Cs (lone
# surrogates, which cannot be encoded) and Zl/Zp (line/paragraph separators:
# harmless to Asterisk, but no value of ours needs them and log viewers split on
# them). A regex instead of unicodedata.category() per character: ~30x faster.
_DROPPED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
_SMALL_INT = re.compile(r"-?[0-9]{1,5}\Z")
_APPLICATION = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_SOUND = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}\Z")

#: ``agi_callerid``/``agi_calleridname`` for an absent number or name: Asterisk
#: writes the literal word, so it cannot be told from a caller really named so.
ABSENT = "unknown"


class AgiError(Exception):
    """Base of every FastAGI failure."""


class AgiProtocolError(AgiError):
    """Asterisk (or whoever connected) sent something that is not FastAGI."""


class AgiHangup(AgiError):
    """The channel hung up (``HANGUP`` line, or ``511`` for a dead channel)."""


class AgiResponse(NamedTuple):
    """One parsed response line.

    Attributes:
        code: The status code (100, 200, 510, 511, 520).
        result: The ``result=`` value of a ``200`` line (``""`` otherwise).
        data: For ``200``: the text in parentheses after the result if the rest
            of the line is parenthesised (``GET VARIABLE``'s value, ``timeout``),
            else the rest of the line; for other codes the message text.
    """

    code: int
    result: str
    data: str


@dataclass(frozen=True, slots=True)
class AgiEnv:
    """The environment of one FastAGI request.

    Attributes:
        script: The requested script: the path of ``agi://host:port/<script>``
            (``agi_network_script``), without query string or slashes around it.
        uniqueid: The channel's unique id (the call id in logs and CDRs).
        channel: The channel name.
        extension: ``agi_extension`` (where ``AGI()`` runs; the DID on a plain
            trunk, ``s`` behind a FreePBX custom destination).
        context: ``agi_context``.
        callerid: ``agi_callerid`` (``"unknown"`` when absent).
        calleridname: ``agi_calleridname`` (``"unknown"`` when absent).
        callingpres: ``agi_callingpres`` as a number, ``None`` if missing or not
            a number.
        args: ``agi_arg_1`` .. ``agi_arg_N`` in order.
        raw: Every key and value as received.
    """

    script: str
    uniqueid: str
    channel: str
    extension: str = ""
    context: str = ""
    callerid: str = ""
    calleridname: str = ""
    callingpres: int | None = None
    args: tuple[str, ...] = ()
    raw: Mapping[str, str] = field(default_factory=dict)


def parse_environment(lines: Sequence[str]) -> AgiEnv:
    r"""Parse the environment block Asterisk sends first.

    Args:
        lines: The decoded lines before the terminating empty line, without
            line terminators (a trailing ``\r`` is tolerated).

    Returns:
        The environment.

    Raises:
        AgiProtocolError: Too many lines or bytes, a line that is not
            ``agi_<name>: <value>``, a key given twice, arguments with gaps, or
            a required key (``agi_uniqueid``, ``agi_channel``, a script) missing.
    """
    if len(lines) > MAX_ENV_LINES:
        raise AgiProtocolError(f"environment has {len(lines)} lines (limit {MAX_ENV_LINES})")
    total = 0
    raw: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        total += len(line) + 1
        if total > MAX_ENV_BYTES:
            raise AgiProtocolError(f"environment exceeds {MAX_ENV_BYTES} bytes")
        text = line.removesuffix("\r")
        key, sep, value = text.partition(":")
        if not sep:
            raise AgiProtocolError(f"line {number} is not 'agi_<name>: <value>': {_clip(text)!r}")
        if not _KEY.match(key):
            raise AgiProtocolError(f"line {number}: bad key {_clip(key)!r}")
        if key in raw:
            raise AgiProtocolError(f"line {number}: {key} given twice")
        # Asterisk writes "%s: %s"; an empty value leaves "agi_x: " (or "agi_x:").
        raw[key] = value.removeprefix(" ")
    if "agi_network" in raw and raw["agi_network"] != "yes":
        raise AgiProtocolError(f"agi_network is {_clip(raw['agi_network'])!r}, not 'yes'")
    for required in ("agi_uniqueid", "agi_channel"):
        if not raw.get(required):
            raise AgiProtocolError(f"{required} missing")
    script = _script(raw)
    if not script:
        raise AgiProtocolError("no script requested (agi_network_script / agi_request)")
    return AgiEnv(
        script=script,
        uniqueid=raw["agi_uniqueid"],
        channel=raw["agi_channel"],
        extension=raw.get("agi_extension", ""),
        context=raw.get("agi_context", ""),
        callerid=raw.get("agi_callerid", ""),
        calleridname=raw.get("agi_calleridname", ""),
        callingpres=_int_or_none(raw.get("agi_callingpres", "")),
        args=_args(raw),
        raw=raw,
    )


def _script(raw: Mapping[str, str]) -> str:
    script = raw.get("agi_network_script")
    if script is None:
        # Older versions only send agi_request ("agi://127.0.0.1:4574/route").
        request = raw.get("agi_request", "")
        scheme, sep, rest = request.partition("://")
        if not sep or not scheme.lower().endswith("agi"):
            return ""
        script = rest.partition("/")[2]
    return script.partition("?")[0].strip("/")


def _args(raw: Mapping[str, str]) -> tuple[str, ...]:
    numbered: dict[int, str] = {}
    for key, value in raw.items():
        match = _ARG_KEY.match(key)
        if match:
            numbered[int(match.group(1))] = value
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise AgiProtocolError(f"AGI arguments are not numbered 1..n: {sorted(numbered)[:10]}")
    return tuple(numbered[n] for n in range(1, len(numbered) + 1))


def _int_or_none(text: str) -> int | None:
    return int(text) if _SMALL_INT.match(text) else None


def parse_response(line: str) -> AgiResponse:
    r"""Parse one response line.

    Args:
        line: The decoded line without its terminator (a trailing ``\r`` is
            tolerated).

    Returns:
        The response.

    Raises:
        AgiHangup: For ``HANGUP`` (the caller is gone).
        AgiProtocolError: For anything that is not a response line.
    """
    text = line.removesuffix("\r")
    # WHY startswith: Asterisk sends "HANGUP\n" with MSG_OOB. Without
    # SO_OOBINLINE (which the server sets) the urgent byte - the "\n" - is taken
    # out of the stream, and "HANGUP" runs into whatever line follows it.
    if text.startswith("HANGUP"):
        raise AgiHangup("caller hung up (HANGUP)")
    match = _RESPONSE.match(text)
    if match is None:
        raise AgiProtocolError(f"not an AGI response: {_clip(text)!r}")
    code = int(match.group("code"))
    rest = match.group("rest")
    if code != 200 or match.group("sep") == "-":
        return AgiResponse(code, "", rest)
    result = _RESULT.match(rest)
    if result is None:
        raise AgiProtocolError(f"200 without result=: {_clip(text)!r}")
    tail = result.group("tail") or ""
    # GET VARIABLE answers "200 result=1 (<value>)" and the value itself may
    # hold parentheses and blanks: everything up to the LAST ")" is the value.
    data = tail[1 : tail.rindex(")")] if tail.startswith("(") and ")" in tail else tail
    return AgiResponse(code, result.group("result"), data)


def quote_value(value: str, max_bytes: int = MAX_VALUE_BYTES) -> str:
    """Quote a value so Asterisk's AGI parser reads it back as one literal word.

    Control characters (newlines end the command; NUL ends the C string) and
    lone surrogates are dropped; backslashes and double quotes are escaped;
    the escaped value is cut to ``max_bytes`` of UTF-8 at a character boundary,
    never between a backslash and the character it escapes.

    Args:
        value: Any text, however hostile.
        max_bytes: Limit of the escaped value's UTF-8 length (quotes excluded).

    Returns:
        ``"..."`` - the word to put into an AGI command line.
    """
    escaped = _DROPPED.sub("", value).replace("\\", "\\\\").replace('"', '\\"')
    data = escaped.encode("utf-8")
    if len(data) <= max_bytes:
        return f'"{escaped}"'
    # Too long: cut at a character boundary, never inside "\\x".
    cut = data[:max_bytes].decode("utf-8", "ignore")
    if (len(cut) - len(cut.rstrip("\\"))) % 2:  # a lone escaping backslash at the end
        cut = cut[:-1]
    return f'"{cut}"'


def sanitised(value: str, max_bytes: int = MAX_VALUE_BYTES) -> str:
    """The value Asterisk stores for ``quote_value(value, max_bytes)``.

    Args:
        value: Any text.
        max_bytes: As for :func:`quote_value`.

    Returns:
        ``value`` without the dropped characters, cut like :func:`quote_value`.
    """
    quoted = quote_value(value, max_bytes)[1:-1]
    return re.sub(r"\\(.)", r"\1", quoted, flags=re.DOTALL)


def _command(*words: str) -> str:
    line = " ".join(words)
    size = len(line.encode("utf-8"))
    if size > AGI_COMMAND_MAX_BYTES:
        raise ValueError(f"AGI command of {size} bytes exceeds {AGI_COMMAND_MAX_BYTES}")
    return line


def _variable(name: str) -> str:
    if not _VARIABLE.match(name):
        raise ValueError(f"not a plain variable or function name: {name!r}")
    return name


def set_variable_command(name: str, value: str) -> str:
    """``SET VARIABLE <name> "<value>"``.

    Args:
        name: Variable or dialplan function (``CALLERID(name)``); ours, validated.
        value: Any text; quoted with :func:`quote_value`.

    Returns:
        The command line (without terminator).

    Raises:
        ValueError: For a name that is not a plain variable or function name.
    """
    return _command("SET", "VARIABLE", _variable(name), quote_value(value))


def get_variable_command(name: str) -> str:
    """``GET VARIABLE <name>``.

    Args:
        name: Variable or dialplan function; validated.

    Returns:
        The command line.

    Raises:
        ValueError: For a name that is not a plain variable or function name.
    """
    return _command("GET", "VARIABLE", _variable(name))


def get_full_variable_command(expression: str) -> str:
    """``GET FULL VARIABLE "<expression>"``: Asterisk substitutes ``${...}`` once.

    The substitution is a single pass: a value that itself contains ``${...}``
    (a hostile ``FROM_DID``) is copied, not evaluated.

    Args:
        expression: Our own fixed expression (never caller data).

    Returns:
        The command line.
    """
    return _command("GET", "FULL", "VARIABLE", quote_value(expression))


def exec_command(application: str, arguments: str) -> str:
    """``EXEC <application> "<arguments>"``.

    Args:
        application: A dialplan application name (``Answer``, ``MSet``).
        arguments: Its argument string, parsed by the application (commas
            separate arguments there): only our own validated values.

    Returns:
        The command line.

    Raises:
        ValueError: For an application name that is not a plain word.
    """
    if not _APPLICATION.match(application):
        raise ValueError(f"not an application name: {application!r}")
    return _command("EXEC", application, quote_value(arguments))


def get_data_command(prompt: str, timeout_ms: int, max_digits: int) -> str:
    """``GET DATA <prompt> <timeout_ms> <max_digits>``.

    Plays the prompt (a digit interrupts it), then waits ``timeout_ms`` for the
    first digit. ``#`` ends the input and is never returned.

    Args:
        prompt: Sound file name without extension (``custom/menu``).
        timeout_ms: Wait after the prompt, at least 1 (0 would mean Asterisk's
            default of several seconds).
        max_digits: Digits to collect, at least 1.

    Returns:
        The command line.

    Raises:
        ValueError: For a prompt that is not a plain sound file name.
    """
    if not _SOUND.match(prompt) or ".." in prompt:
        raise ValueError(f"not a sound file name: {prompt!r}")
    return _command(
        "GET",
        "DATA",
        quote_value(prompt),
        str(max(1, int(timeout_ms))),
        str(max(1, int(max_digits))),
    )


def encode_command(command: str) -> bytes:
    r"""The bytes to write for one command.

    Args:
        command: A line built by one of the ``*_command`` functions.

    Returns:
        UTF-8 with the ``\n`` terminator.

    Raises:
        ValueError: If the command holds a line break or NUL, or is too long.
    """
    if any(c in command for c in "\r\n\0"):
        raise ValueError("AGI command holds a line break or NUL")
    data = command.encode("utf-8")
    if len(data) > AGI_COMMAND_MAX_BYTES:
        raise ValueError(f"AGI command of {len(data)} bytes exceeds {AGI_COMMAND_MAX_BYTES}")
    return data + b"\n"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
