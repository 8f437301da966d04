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
  :func:`parse_message`, which (unlike ``panoramisk.Message.from_line``) keeps
  headers whose value is empty even when they are the last line of a message.

Everything else (action bookkeeping by ``ActionID``, event dispatch, the
``Shutdown`` event) is panoramisk's: parsed messages go to the inherited
``handle_message``.
"""

from __future__ import annotations

import codecs
import logging
import re
from typing import Any, Final

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

__all__ = ["BANNER_PREFIX", "MAX_MESSAGE_CHARS", "Utf8AmiProtocol", "parse_message"]

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
# Longest separator minus one: how far back to re-scan when a chunk arrives, so a
# separator split across chunks is still found without re-scanning the buffer.
_SEPARATOR_OVERLAP: Final = 3


def parse_message(text: str) -> Message | None:
    """Parse one AMI message (the text between two blank lines).

    Header lines are ``Key: value``. A header sent several times (``ChanVariable``,
    ``Output``, ``Variable``) becomes a list of values, which is what panoramisk's
    ``Message.getdict()`` expects. Lines without a colon are collected as the
    message's ``content`` (old-style ``Response: Follows`` command output).

    Args:
        text: The message text without the terminating blank line.

    Returns:
        A panoramisk ``Message``, or ``None`` when the text is neither an event nor
        a response (e.g. stray text before the banner).
    """
    headers: dict[str, Any] = {}
    content: list[str] = []
    for line in _LINE_SPLIT.split(text.strip("\r\n")):
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
    lowered = {k.lower() for k in headers}
    if "event" not in lowered and "response" not in lowered:
        return None
    return Message(headers, "\n".join(content))


class Utf8AmiProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's AMI protocol with stream-safe UTF-8 decoding and framing.

    Pass the class as ``protocol_factory`` to ``panoramisk.Manager``.

    Attributes:
        version: The AMI version from the banner (``"9.0.0"`` on Asterisk 22),
            ``None`` until the banner was received.
    """

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
        while True:
            match = _MESSAGE_END.search(self._buffer, self._scan_from)
            if match is None:
                break
            text = self._buffer[: match.start()]
            self._buffer = self._buffer[match.end() :]
            self._scan_from = 0
            message = parse_message(text)
            if message is None:
                if text.strip():
                    _log.debug("ignored AMI text without Event/Response: %.80r", text)
                continue
            self.handle_message(message)
            if self.closed:
                # handle_message() closes the connection on "Event: Shutdown";
                # anything after that belongs to no one.
                return
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
