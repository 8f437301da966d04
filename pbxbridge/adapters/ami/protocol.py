"""The AMI wire protocol: a drop-in replacement for panoramisk's ``AMIProtocol``.

panoramisk 1.4 decodes every TCP chunk on its own with ``errors='ignore'``
(``data.decode(encoding, 'ignore')`` in ``AMIProtocol.data_received``). AMI is a
byte stream, not a message stream: when a multi-byte UTF-8 character straddles two
``recv()`` calls, both halves are silently dropped and ``Jörg Müller`` arrives as
``Jörg Mller``. Calling names are exactly what a screen pop shows, so this module
replaces the protocol class (panoramisk accepts one through its
``protocol_factory`` setting) with one that

* decodes with an *incremental* UTF-8 decoder, which keeps an incomplete
  trailing sequence until the next chunk completes it;
* replaces (instead of dropping) bytes that really are invalid, so a broken
  name stays visibly broken rather than silently shortened;
* frames messages itself on the blank line and parses them with
  :func:`split_message`, which (unlike ``panoramisk.Message.from_line``) keeps
  headers whose value is empty even when they are the last line of a message;
* hands events that answer no action straight to :attr:`Utf8AmiProtocol.on_event`
  as plain dicts, when the client set it.

The last point is about cost: panoramisk would build a case-insensitive
``Message`` per event, look it up in its response table, match it against every
registered pattern, and the client would then copy it into a plain dict again:
most of the daemon's AMI time per call. An event without ``ActionID`` belongs to
no action, so panoramisk has nothing to do with it. Everything else (responses,
the list items of ``QueueStatus``, ``OriginateResponse`` of an ``originate``
that waits, the ``Shutdown`` event that ends the connection) goes the panoramisk
way: a ``Message`` to the inherited ``handle_message``.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Callable
from typing import Any, Final

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from .events import CONTENT_KEY, MULTI_VALUE_SEPARATOR, AmiEvent

__all__ = [
    "BANNER_PREFIX",
    "MAX_MESSAGE_CHARS",
    "Utf8AmiProtocol",
    "parse_message",
    "plain_event",
    "split_message",
]

_log = logging.getLogger(__name__)

#: First line Asterisk sends on a new connection, e.g. ``Asterisk Call Manager/9.0.0``.
BANNER_PREFIX: Final = "Asterisk Call Manager/"

#: A message (or the part of one received so far) larger than this is treated as a
#: protocol error and the connection is closed. The largest real messages are
#: ``Command`` outputs and ``CoreShowChannels`` entries with many variables,
#: well below 1 MiB; without a limit a peer that never sends the terminating blank
#: line would grow the buffer forever.
MAX_MESSAGE_CHARS: Final = 4 * 1024 * 1024

# AMI separates messages with an empty line. Asterisk writes CRLF; a bare LF is
# tolerated (panoramisk's own comment: "sometimes we receive only one EOL").
_MESSAGE_END: Final = re.compile(r"\r?\n\r?\n")
# Split lines on CRLF/LF only. str.splitlines() would also split on U+2028, U+0085,
# \x1c... which may legitimately occur inside a UTF-8 caller name.
_LINE_SPLIT: Final = re.compile(r"\r?\n")
# One header line as split_message's loop reads it: a key without spaces up to
# the first colon, one optional space, the value (a CR before the LF is not part
# of it). Lines that are not (body lines, empty lines) fail to match.
_HEADER_LINE: Final = re.compile(r"^([^:\r\n ]+): ?([^\r\n]*)\r?$", re.MULTILINE)
# Longest separator minus one: how far back to re-scan when a chunk arrives, so a
# separator split across chunks is still found without re-scanning the buffer.
_SEPARATOR_OVERLAP: Final = 3


def split_message(text: str) -> tuple[dict[str, Any], list[str]]:
    """Split one AMI message into its headers and its body lines.

    Header lines are ``Key: value``. A header sent several times (``ChanVariable``,
    ``Output``, ``Variable``) becomes a list of values. Lines without a colon are
    body lines (old-style ``Response: Follows`` command output).

    Args:
        text: The message text without the terminating blank line.

    Returns:
        The headers (a value is a ``str``, or a ``list`` for a repeated header)
        and the body lines.
    """
    body = text.strip("\r\n")
    # Most messages are nothing but distinct "Key: value" lines: then one
    # findall in C does it (the loop below takes twice as long per event).
    pairs = _HEADER_LINE.findall(body)
    if len(pairs) == body.count("\n") + 1:
        simple: dict[str, Any] = dict(pairs)
        if len(simple) == len(pairs):
            return simple, []
    headers: dict[str, Any] = {}
    content: list[str] = []
    for line in _LINE_SPLIT.split(body):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or " " in key:
            # QUIRK: "--END COMMAND--" and other body lines of legacy "Follows"
            # responses have no header syntax; keep them as content.
            content.append(line)
            continue
        # Asterisk writes "Key: value"; drop exactly the one separator space so
        # values with leading spaces (rare, but e.g. in Output lines) survive.
        value = value[1:] if value.startswith(" ") else value
        existing = headers.get(key)
        if existing is None:
            headers[key] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            headers[key] = [existing, value]
    return headers, content


def parse_message(text: str) -> Message | None:
    """Parse one AMI message (the text between two blank lines) into a panoramisk ``Message``.

    The headers as :func:`split_message` gives them (a repeated header is a list
    of values, which is what panoramisk's ``Message.getdict()`` expects), the body
    lines as the message's ``content``.

    Args:
        text: The message text without the terminating blank line.

    Returns:
        A panoramisk ``Message``, or ``None`` when the text is neither an event nor
        a response (e.g. stray text before the banner).
    """
    return _message(*split_message(text))


def _message(headers: dict[str, Any], content: list[str]) -> Message | None:
    lowered = {k.lower() for k in headers}
    if "event" not in lowered and "response" not in lowered:
        return None
    return Message(headers, "\n".join(content))


def plain_event(headers: dict[str, Any], content: list[str]) -> AmiEvent:
    """What :func:`~.events.normalize_event` makes of the same message, without a ``Message``.

    Repeated headers joined with :data:`~.events.MULTI_VALUE_SEPARATOR`, the body
    (if any) under ``"content"``.

    Args:
        headers: From :func:`split_message` (changed in place and returned).
        content: Its body lines.

    Returns:
        The event as a plain dict.
    """
    for key, value in headers.items():
        if value.__class__ is list:
            headers[key] = MULTI_VALUE_SEPARATOR.join(value)
    if content:
        headers[CONTENT_KEY] = "\n".join(content)
    return headers


class Utf8AmiProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's AMI protocol with stream-safe UTF-8 decoding and framing.

    Pass the class as ``protocol_factory`` to ``panoramisk.Manager``.

    Attributes:
        version: The AMI version from the banner (``"9.0.0"`` on Asterisk 22),
            ``None`` until the banner was received.
        on_event: Called with each event that answers no action (no
            ``ActionID``), as a plain dict, instead of panoramisk's dispatch;
            ``None`` (the default): every message goes the panoramisk way.
    """

    on_event: Callable[[AmiEvent], None] | None = None

    def connection_made(self, transport: Any) -> None:
        """Set up per-connection state (called by asyncio).

        Args:
            transport: The connection's transport.
        """
        super().connection_made(transport)
        # errors="replace": invalid bytes become U+FFFD instead of vanishing.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._scan_from = 0
        self._banner_done = False

    def data_received(self, data: bytes) -> None:
        """Decode a chunk, split complete messages off the buffer, handle them.

        Args:
            data: Bytes as received from the socket (any split).
        """
        # The incremental decoder holds back an incomplete trailing UTF-8 sequence
        # (e.g. b"\xc3" of "ü") until the next chunk brings the rest.
        self._buffer += self._decoder.decode(data)
        if not self._banner_done and not self._take_banner():
            return
        buffer = self._buffer
        start = 0
        on_event = self.on_event
        while True:
            match = _MESSAGE_END.search(buffer, max(start, self._scan_from))
            if match is None:
                break
            text = buffer[start : match.start()]
            start = match.end()
            headers, content = split_message(text)
            name = headers.get("Event")
            if (
                on_event is not None
                and name is not None
                and name != "Shutdown"
                and "ActionID" not in headers
            ):
                # Asterisk spells these headers exactly so; anything else takes
                # the panoramisk way below, which finds them in any case.
                on_event(plain_event(headers, content))
                continue
            message = _message(headers, content)
            if message is None:
                if text.strip():
                    _log.debug("ignored AMI text without Event/Response: %.80r", text)
                continue
            self.handle_message(message)
            if self.closed:
                # handle_message() closes the connection on "Event: Shutdown";
                # anything after that belongs to no one.
                return
        # Cut what was handled once per chunk, not once per message.
        self._buffer = buffer[start:] if start else buffer
        if len(self._buffer) > MAX_MESSAGE_CHARS:
            _log.error("AMI message exceeds %d characters; closing", MAX_MESSAGE_CHARS)
            self._buffer = ""
            self.transport.abort()
            return
        self._scan_from = max(0, len(self._buffer) - _SEPARATOR_OVERLAP)

    def _take_banner(self) -> bool:
        """Consume the one-line banner; False while it is still incomplete.

        QUIRK: the banner ends with a single CRLF, not a blank line. panoramisk
        glues it to the front of the first real message (where it is ignored as a
        line without ``": "``); we take it off explicitly and remember the version.
        """
        buffer = self._buffer
        if buffer.startswith(BANNER_PREFIX) or BANNER_PREFIX.startswith(buffer):
            if "\n" in buffer:
                line, _, rest = buffer.partition("\n")
                self.version = line[len(BANNER_PREFIX) :].strip()
                self._buffer = rest
                _log.debug("AMI protocol version %s", self.version)
            elif len(buffer) < len(BANNER_PREFIX) + 64:
                return False  # could still become the banner: wait for the line end
        # Anything else (no banner at all) is parsed as messages.
        self._banner_done = True
        return True
