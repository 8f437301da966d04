"""A minimal, synchronous AMI client for tests (stdlib only).

Not the daemon's AMI adapter: this one exists so tests can log in, run actions and
collect events as evidence ("the fallback put the call in queue servicecenter",
"DTMF 5 arrived") without depending on the code under test.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

#: One AMI message. Repeated keys (e.g. ``ChanVariable``) keep the last value.
Message = dict[str, str]


class AmiError(RuntimeError):
    """Login failed, the connection dropped or an action was refused."""


class AmiClient:
    """Connects, logs in and collects every event in the background.

    Usage::

        with AmiClient("127.0.0.1", 5038, "pbxbridge", "secret") as ami:
            ami.action("Ping")
            ev = ami.wait_for_event(lambda e: e.get("Event") == "QueueCallerJoin")
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        timeout: float = 5.0,
        events: bool = True,
    ) -> None:
        """Connect and log in.

        Args:
            host: AMI host.
            port: AMI port.
            username: Manager user.
            secret: Manager secret.
            timeout: Seconds to wait for the connection and each response.
            events: Receive events (``Events: on``); off for plain action use.

        Raises:
            AmiError: Connection or login failed.
        """
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._responses: dict[str, Message] = {}
        self._list_events: dict[str, list[Message]] = {}
        self.events: list[Message] = []
        self._closed = False
        self._error: str | None = None
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise AmiError(f"cannot connect to AMI {host}:{port}: {exc}") from exc
        self._sock.settimeout(None)
        self._file = self._sock.makefile("rb")
        self.banner = self._file.readline().decode("utf-8", "replace").strip()
        if not self.banner.startswith("Asterisk Call Manager"):
            self.close()
            raise AmiError(f"unexpected AMI banner {self.banner!r}")
        self._reader = threading.Thread(target=self._read_loop, name="ami-reader", daemon=True)
        self._reader.start()
        resp = self.action(
            "Login", Username=username, Secret=secret, Events="on" if events else "off"
        )
        if resp.get("Response") != "Success":
            self.close()
            raise AmiError(f"AMI login failed: {resp.get('Message', resp)}")

    def __enter__(self) -> AmiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def _read_loop(self) -> None:
        lines: list[str] = []
        try:
            for raw in self._file:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line:
                    lines.append(line)
                    continue
                if lines:
                    self._dispatch(_parse(lines))
                    lines = []
        except (OSError, ValueError) as exc:
            self._error = str(exc)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _dispatch(self, msg: Message) -> None:
        with self._cond:
            action_id = msg.get("ActionID", "")
            if "Response" in msg:
                self._responses[action_id] = msg
            elif "Event" in msg:
                if action_id and action_id in self._list_events:
                    self._list_events[action_id].append(msg)
                else:
                    self.events.append(msg)
            self._cond.notify_all()

    # ------------------------------------------------------------------ actions

    def action(self, name: str, **fields: str) -> Message:
        """Send an action and wait for its response.

        Args:
            name: Action name.
            **fields: Action headers.

        Returns:
            The response message.

        Raises:
            AmiError: No response in time or the connection is gone.
        """
        action_id = f"tb-{next(self._ids)}"
        self._send(name, action_id, fields)
        return self._wait_response(action_id)

    def list_action(self, name: str, **fields: str) -> list[Message]:
        """Send an action that answers with an event list and collect the list.

        Args:
            name: Action name (e.g. ``QueueStatus``, ``CoreShowChannels``).
            **fields: Action headers.

        Returns:
            The list's events, without the closing ``...Complete`` event.

        Raises:
            AmiError: Refused, no complete list in time, or connection lost.
        """
        action_id = f"tb-{next(self._ids)}"
        with self._cond:
            self._list_events[action_id] = []
        self._send(name, action_id, fields)
        resp = self._wait_response(action_id)
        if resp.get("Response") != "Success":
            raise AmiError(f"{name} failed: {resp.get('Message', resp)}")
        deadline = time.monotonic() + self._timeout
        with self._cond:
            while True:
                items = self._list_events[action_id]
                if items and items[-1].get("EventList") == "Complete":
                    del self._list_events[action_id]
                    return items[:-1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise AmiError(f"{name}: event list did not complete")
                self._cond.wait(remaining)

    def command(self, cmd: str) -> str:
        """Run a CLI command through AMI.

        Args:
            cmd: CLI command.

        Returns:
            Its output.
        """
        resp = self.action("Command", Command=cmd)
        return resp.get("Output", resp.get("Message", ""))

    def _send(self, name: str, action_id: str, fields: Mapping[str, str]) -> None:
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        lines.extend(f"{k}: {v}" for k, v in fields.items())
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise AmiError(f"AMI send failed: {exc}") from exc

    def _wait_response(self, action_id: str) -> Message:
        deadline = time.monotonic() + self._timeout
        with self._cond:
            while action_id not in self._responses:
                remaining = deadline - time.monotonic()
                if self._closed:
                    raise AmiError(f"AMI connection closed ({self._error or 'EOF'})")
                if remaining <= 0:
                    raise AmiError(f"no AMI response to {action_id}")
                self._cond.wait(remaining)
            return self._responses.pop(action_id)

    # ------------------------------------------------------------------- events

    def wait_for_event(
        self,
        predicate: Callable[[Message], bool],
        timeout: float = 10.0,
        *,
        start: int = 0,
    ) -> Message:
        """Wait until an event satisfying ``predicate`` has been received.

        Args:
            predicate: Test applied to each event.
            timeout: Seconds to wait.
            start: Index into :attr:`events` to search from (events received before
                are ignored).

        Returns:
            The first matching event.

        Raises:
            AmiError: None arrived in time.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            idx = start
            while True:
                while idx < len(self.events):
                    ev = self.events[idx]
                    idx += 1
                    if predicate(ev):
                        return ev
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise AmiError("expected AMI event did not arrive")
                self._cond.wait(remaining)

    def events_named(self, name: str) -> list[Message]:
        """All events received so far with ``Event: <name>``.

        Args:
            name: Event name.

        Returns:
            Matching events, oldest first.
        """
        with self._cond:
            return [e for e in self.events if e.get("Event") == name]

    def close(self) -> None:
        """Log off and close the socket (idempotent)."""
        if getattr(self, "_sock", None) is None:
            return
        with contextlib.suppress(OSError):
            self._sock.sendall(b"Action: Logoff\r\n\r\n")
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        if hasattr(self, "_reader"):
            self._reader.join(timeout=2)


def _parse(lines: list[str]) -> Message:
    msg: Message = {}
    output: list[str] = []
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            output.append(line)
            continue
        key = key.strip()
        if key == "Output":
            # "Command" responses carry the CLI output as repeated "Output:" lines
            output.append(value[1:] if value.startswith(" ") else value)
            continue
        msg[key] = value.strip()
    if output:
        msg["Output"] = "\n".join(output)
    return msg
