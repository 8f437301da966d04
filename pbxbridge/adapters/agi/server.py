r"""A FastAGI server with hard limits, over ``asyncio.start_server``.

Asterisk's ``AGI(agi://127.0.0.1:4574/route,<secret>)`` opens one TCP connection per
call, sends the environment and then waits for our commands; the call stays in
``AGI()`` until we close the connection. Whatever goes wrong here, Asterisk only
ever sees a closed connection, and the dialplan goes on to its fallback.

Why not panoramisk's ``fast_agi.Application`` (its AMI client is used
elsewhere): its handler reads the environment with ``reader.read(100)``
until it sees ``\n\n``, with no limit on the buffer, no
timeout, and no cap on connections, so one client sending endless bytes
grows memory without bound and thousands of idle clients each keep a task
forever; it decodes the environment strictly outside its ``try`` (a non-UTF-8
caller name crashes the connection handler); ``Request.send_command`` reads
responses without a timeout, reads only one extra line of a multi-line ``520``
and has no answer to ``HANGUP``. Those are exactly the limits a server open
to the network needs, and they live in the reading loop, which is all that
class does. So the protocol is ours: a pure parser
(:mod:`pbxbridge.adapters.agi.protocol`, which the tests fuzz) and this small
server, which enforces

* the line length: the ``StreamReader`` ``limit`` (8 KB); a longer line ends
  the connection;
* the environment: at most 200 lines / 64 KB, complete within
  ``env_timeout_s`` (Asterisk sends it in one burst right after connecting);
* every command's response within ``command_timeout_s`` (the 115 menu's
  ``GET DATA`` gets the menu's own cap), the whole session within
  ``session_timeout_s``;
* the number of connections: ``max_sessions`` (further capped by the open-files
  limit). When full, a new connection evicts the oldest one that has not yet
  completed its environment - a real Asterisk completes it within
  milliseconds, so a flood of idle connections can only push out itself, never
  a call that is being routed. Only when every slot routes a real call is the
  newcomer turned away (and takes the dialplan fallback).

Every fault is one log line ``agi.<reason>`` (peer, phase, call id when known)
and a counter in :attr:`AgiServer.stats`; it ends that connection only.

Authentication: FastAGI has none of its own, and any local process can connect
to a loopback port. With a secret configured, a session whose first AGI
argument (``agi_arg_1``) is not that secret is refused before any script runs
(fault ``bad_secret``; compared in constant time, never logged). The secret
travels in the dialplan (``AGI(agi://127.0.0.1:4574/route,${GLOBAL(...)})``),
which only Asterisk's own configuration can set; a peer that can read that
configuration owns the PBX anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import resource
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from pbxbridge.adapters.agi.protocol import (
    MAX_ENV_BYTES,
    MAX_ENV_LINES,
    MAX_LINE_BYTES,
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
    set_variable_command,
)

log = structlog.get_logger(__name__)

FD_RESERVE = 128
"""Open files kept free for everything else (ARI, AMI, HTTP, MQTT, the journal)."""


class AgiTimeout(AgiError):
    """No (complete) answer in time."""


class AgiDisconnected(AgiError):
    """The peer closed the connection (or it broke) in the middle of a session."""


class AgiLineTooLong(AgiError):
    """A line longer than the reader's limit."""


class AgiCommandError(AgiError):
    """Asterisk refused a command (510, 520 or an unexpected code).

    Attributes:
        response: The response.
    """

    def __init__(self, verb: str, response: AgiResponse) -> None:
        super().__init__(f"{verb}: {response.code} {response.data[:80]}")
        self.response = response


@dataclass(frozen=True)
class AgiLimits:
    """What one connection may cost.

    Attributes:
        line_bytes: Longest line (the ``StreamReader`` limit).
        env_timeout_s: The environment must be complete this long after connecting.
        command_timeout_s: Default wait for a command's response.
        session_timeout_s: Longest session (environment, 115 menu and tagging).
        max_sessions: Most connections at once.
        backlog: ``listen()`` backlog (bursts of calls at once).
    """

    line_bytes: int = MAX_LINE_BYTES
    env_timeout_s: float = 5.0
    command_timeout_s: float = 10.0
    session_timeout_s: float = 90.0
    max_sessions: int = 1000
    backlog: int = 1024


@dataclass
class AgiServerStats:
    """Counters for health and tests.

    Attributes:
        accepted: Connections accepted.
        sessions: Sessions handed to a route handler.
        evicted: Idle connections closed to make room.
        over_capacity: Connections turned away because every slot routes a call.
        faults: Faults by reason (``line_too_long``, ``env_timeout`` ...).
    """

    accepted: int = 0
    sessions: int = 0
    evicted: int = 0
    over_capacity: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class AgiSession:
    """One call's FastAGI conversation, as the route handler sees it.

    Args:
        env: The parsed environment.
        reader: The connection's reader.
        writer: The connection's writer.
        command_timeout_s: Default wait for a response.
    """

    def __init__(
        self,
        env: AgiEnv,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        command_timeout_s: float,
    ) -> None:
        self.env = env
        self._reader = reader
        self._writer = writer
        self._timeout = command_timeout_s
        self.commands = 0

    async def command(self, command: str, timeout_s: float | None = None) -> AgiResponse:
        """Send one command and wait for its final response.

        Commands go strictly one at a time. WHY not pipelined: Asterisk reads
        commands with ``fgets`` from an ``fdopen``-ed stream, but waits for the
        next one with ``poll`` on the socket; a second command that arrived in
        the same segment sits in stdio's buffer, ``poll`` never reports it, and
        the call hangs until the next byte arrives.

        Args:
            command: A line from the ``*_command`` builders.
            timeout_s: Wait for the response (default ``command_timeout_s``).

        Returns:
            The ``200`` response.

        Raises:
            AgiHangup: ``HANGUP``, or ``511`` (dead channel).
            AgiCommandError: ``510``, ``520`` or another non-200 code.
            AgiTimeout: No response in time.
            AgiDisconnected: The connection closed.
            AgiLineTooLong: A response line over the limit.
            AgiProtocolError: A line that is not a response.
        """
        verb = " ".join(command.split(" ", 2)[:2])
        data = encode_command(command)
        self.commands += 1
        try:
            async with asyncio.timeout(self._timeout if timeout_s is None else timeout_s):
                self._writer.write(data)
                await self._writer.drain()
                while True:
                    response = parse_response(await _readline(self._reader, "session"))
                    if response.code != 100:  # "100 result=0 Trying...": more follows
                        break
        except TimeoutError:
            raise AgiTimeout(f"no response to {verb}") from None
        except ConnectionError as exc:
            raise AgiDisconnected(f"connection lost during {verb}: {exc}") from None
        if response.code == 511:
            raise AgiHangup(f"{verb}: channel is dead (511)")
        if response.code != 200:
            # 520 is followed by usage text; the connection is closed right
            # after a failure, so there is no need to read past it.
            raise AgiCommandError(verb, response)
        return response

    async def get_variable(self, name: str) -> str | None:
        """``GET VARIABLE``.

        Args:
            name: Variable or function name.

        Returns:
            The value, or ``None`` when the variable is not set.
        """
        response = await self.command(get_variable_command(name))
        return response.data if response.result == "1" else None

    async def get_full_variable(self, expression: str) -> str | None:
        """``GET FULL VARIABLE``: evaluate our own ``${...}`` expression once.

        Args:
            expression: The expression (never caller data).

        Returns:
            The result, or ``None`` if Asterisk could not evaluate it.
        """
        response = await self.command(get_full_variable_command(expression))
        return response.data if response.result == "1" else None

    async def exec(self, application: str, arguments: str) -> str:
        """``EXEC`` a dialplan application.

        Args:
            application: Application name.
            arguments: Its arguments (our own validated values only).

        Returns:
            The application's result code.

        Raises:
            AgiHangup: The application failed because the caller is gone (-1).
            AgiCommandError: No such application (-2).
        """
        response = await self.command(exec_command(application, arguments))
        if response.result == "-1":
            raise AgiHangup(f"{application} failed")
        if response.result == "-2":
            raise AgiCommandError(f"EXEC {application}", response)
        return response.result

    async def set_variable(self, name: str, value: str) -> None:
        """``SET VARIABLE`` (the value is stored verbatim, never evaluated).

        Args:
            name: Variable or function name.
            value: Any text (quoted and cleaned by :func:`quote_value`).
        """
        await self.command(set_variable_command(name, value))

    async def answer(self) -> None:
        """Answer the channel at once: ``EXEC Answer ",i"``.

        WHY not the AGI ``ANSWER`` command: it answers with ``ast_answer()``,
        which then waits up to 500 ms for media and puts the frames it read
        meanwhile back into the channel's queue. A DTMF digit sent as SIP INFO
        in that window came back later as a lone "DTMF begin" that reached the
        queue's bridge, and the call never hung up again, not even on BYE or
        ``channel request hangup`` (Asterisk 22.10; reproduced in the test bed
        for digits 0-450 ms after the 200 OK). ``Answer()``'s ``i`` option
        answers without waiting for media, as ARI's answer does; the digit then
        goes straight to ``GET DATA``.

        Raises:
            AgiHangup: Asterisk could not answer (the caller is gone).
            AgiCommandError: ``Answer`` is not available (``result=-2``).
        """
        await self.exec("Answer", ",i")

    async def get_data(
        self, prompt: str, timeout_ms: int, max_digits: int, timeout_s: float
    ) -> str:
        """``GET DATA``: play ``prompt`` (digits interrupt it), then collect digits.

        Args:
            prompt: Sound file name.
            timeout_ms: Wait for the first digit after the prompt.
            max_digits: Digits to collect.
            timeout_s: Our own limit on the whole command.

        Returns:
            The digits pressed (``""`` when the caller pressed none).

        Raises:
            AgiHangup: The caller hung up (``result=-1``).
        """
        response = await self.command(
            get_data_command(prompt, timeout_ms, max_digits), timeout_s=timeout_s
        )
        if response.result == "-1":
            raise AgiHangup("GET DATA: caller hung up")
        return response.result


AgiHandler = Callable[[AgiSession], Awaitable[None]]
"""A route: gets the session; returning (or raising) closes the connection."""


@dataclass(eq=False)
class _Connection:
    number: int
    peer: str
    writer: asyncio.StreamWriter
    started: float
    phase: str = "environment"
    call_id: str = ""
    evicted: bool = False


async def _readline(reader: asyncio.StreamReader, phase: str) -> str:
    try:
        raw = await reader.readline()
    except ValueError as exc:  # LimitOverrunError, re-raised by readline()
        raise AgiLineTooLong(f"line over the limit in the {phase}") from exc
    except OSError as exc:  # reset by the peer
        raise AgiDisconnected(f"connection lost in the {phase}: {exc}") from None
    if not raw.endswith(b"\n"):  # EOF, possibly after a partial line
        raise AgiDisconnected(f"connection closed in the {phase}")
    # Caller names may carry any bytes (Latin-1 from old carriers): replace,
    # the dialplan sanitiser drops the replacement character later.
    return raw.decode("utf-8", "replace").rstrip("\r\n")


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def _fd_capacity(wanted: int) -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, max(16, soft - FD_RESERVE))


class AgiServer:
    """Listens for FastAGI connections and hands each to its route.

    Args:
        host: Bind address.
        port: Bind port (0: any free port, for tests).
        routes: Script name (the URL path, ``route`` for
            ``agi://127.0.0.1:4574/route``) to handler.
        limits: Size, time and connection limits.
        retry_s: Pause between bind attempts when the port is taken.
        secret: Shared secret each session must pass as its first argument
            (``""``: no authentication; a warning at start and in ``/healthz``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Mapping[str, AgiHandler],
        limits: AgiLimits | None = None,
        retry_s: float = 2.0,
        secret: str = "",
    ) -> None:
        self.host = host
        self._secret = secret.encode("utf-8")
        self.requested_port = port
        self._routes = dict(routes)
        self.limits = limits or AgiLimits()
        self.capacity = _fd_capacity(self.limits.max_sessions)
        self._retry_s = retry_s
        self._server: asyncio.Server | None = None
        self._retry_task: asyncio.Task[None] | None = None
        self._stopping = False
        # Insertion-ordered: the first entry of _pending is the oldest.
        self._pending: dict[int, _Connection] = {}
        self._routing: dict[int, _Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._counter = itertools.count(1)
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats = AgiServerStats()
        self.last_error: str | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> bool:
        """Bind and listen; on failure keep retrying in the background.

        Returns:
            True when listening now, False when the bind failed (retrying).
        """
        if not self._secret:
            log.warning(
                "agi.no_secret",
                reason="no FastAGI secret configured (credential "
                "agi-secret or PBXBRIDGE_AGI_SECRET): any local process can "
                "inject calls",
            )
        if self.capacity < self.limits.max_sessions:
            log.warning(
                "agi.capacity_reduced",
                max_sessions=self.limits.max_sessions,
                capacity=self.capacity,
                reason="open files limit (ulimit -n)",
            )
        if await self._bind():
            return True
        self._retry_task = asyncio.create_task(self._retry_bind(), name="agi-bind-retry")
        return False

    async def _bind(self) -> bool:
        try:
            self._server = await asyncio.start_server(
                self._on_connect,
                self.host,
                self.requested_port,
                limit=self.limits.line_bytes,
                backlog=self.limits.backlog,
                reuse_address=True,
            )
        except OSError as exc:
            self.last_error = str(exc)
            log.error(
                "agi.bind_failed",
                host=self.host,
                port=self.requested_port,
                error=str(exc),
                retry_s=self._retry_s,
            )
            return False
        self.last_error = None
        log.info("agi.listening", host=self.host, port=self.port, capacity=self.capacity)
        return True

    async def _retry_bind(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._retry_s)
            if not self._stopping and await self._bind():
                return

    @property
    def authenticated(self) -> bool:
        """Whether sessions must present the shared secret."""
        return bool(self._secret)

    @property
    def listening(self) -> bool:
        """Whether the listening socket is open."""
        return self._server is not None and self._server.is_serving()

    @property
    def port(self) -> int:
        """The bound port (the requested one until bound)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self.requested_port

    @property
    def connections(self) -> int:
        """Open connections (waiting for their environment or routing)."""
        return len(self._pending) + len(self._routing)

    @property
    def in_progress(self) -> int:
        """Sessions being routed right now (environment complete)."""
        return len(self._routing)

    async def stop(self, drain_s: float) -> bool:
        """Stop listening, let sessions finish, then close what is left.

        New calls find the port closed from the first moment: ``AGI()`` fails
        at once and the dialplan takes its fallback.

        Args:
            drain_s: How long sessions may take to finish.

        Returns:
            True when every session finished in time.
        """
        self._stopping = True
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
        if self._server is not None:
            self._server.close()
        drained = True
        try:
            async with asyncio.timeout(drain_s):
                await self._idle.wait()
        except TimeoutError:
            drained = False
            log.warning("agi.drain_timeout", in_progress=self.connections)
        for conn in [*self._pending.values(), *self._routing.values()]:
            conn.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        return drained

    # -- connections ---------------------------------------------------------

    def _admit(self, conn: _Connection) -> bool:
        if self.connections < self.capacity:
            return True
        if self._pending:
            victim = next(iter(self._pending.values()))
            del self._pending[victim.number]
            victim.evicted = True
            self.stats.evicted += 1
            log.warning(
                "agi.evicted",
                peer=victim.peer,
                waited_s=round(time.monotonic() - victim.started, 3),
                reason="connection limit reached, "
                "oldest connection without a complete environment closed",
                capacity=self.capacity,
            )
            victim.writer.transport.abort()
            return True
        self.stats.over_capacity += 1
        log.error(
            "agi.over_capacity",
            peer=conn.peer,
            capacity=self.capacity,
            reason="every slot routes a call; this call takes the dialplan fallback",
        )
        return False

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        conn = _Connection(next(self._counter), _peer(writer), writer, time.monotonic())
        self.stats.accepted += 1
        if self._stopping or not self._admit(conn):
            writer.transport.abort()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # WHY: Asterisk sends "HANGUP\n" with MSG_OOB; inline, its "\n"
            # stays in the stream and HANGUP arrives as a line of its own.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        self._pending[conn.number] = conn
        if task is not None:
            self._tasks.add(task)
        self._idle.clear()
        try:
            await self._serve(conn, reader, writer)
        finally:
            self._pending.pop(conn.number, None)
            self._routing.pop(conn.number, None)
            if task is not None:
                self._tasks.discard(task)
            if not self._pending and not self._routing:
                self._idle.set()
            # Every command's response was awaited, so nothing is left to
            # flush: close() sends FIN at once, which ends AGI() normally
            # (AGISTATUS=SUCCESS) and lets the dialplan go on.
            writer.close()

    async def _serve(
        self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            env = await self._environment(conn, reader)
        except AgiError as exc:
            if not conn.evicted:
                self._fault(conn, _reason(exc, "environment"), exc)
            return
        if conn.evicted:  # evicted while its last lines were still buffered
            return
        conn.call_id = env.uniqueid
        if self._secret and not self._secret_matches(env):
            # Before the script lookup: an unauthenticated peer learns nothing,
            # not even which scripts exist. Closing ends AGI() and the dialplan
            # takes its fallback.
            self._fault(
                conn,
                "bad_secret",
                f"first AGI argument is not the shared secret ({len(env.args)} arguments)",
            )
            return
        handler = self._routes.get(env.script)
        if handler is None:
            self._fault(
                conn, "unknown_script", f"no route {env.script!r}; known: {sorted(self._routes)}"
            )
            return
        del self._pending[conn.number]
        conn.phase = "session"
        self._routing[conn.number] = conn
        self.stats.sessions += 1
        session = AgiSession(env, reader, writer, self.limits.command_timeout_s)
        remaining = self.limits.session_timeout_s - (time.monotonic() - conn.started)
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                await handler(session)
        except TimeoutError:
            self._fault(
                conn, "session_timeout", f"session longer than {self.limits.session_timeout_s} s"
            )
        except AgiError as exc:
            self._fault(conn, _reason(exc, "session"), exc)
        except Exception as exc:
            self.stats.faults["handler_crashed"] = self.stats.faults.get("handler_crashed", 0) + 1
            log.exception(
                "agi.handler_crashed", peer=conn.peer, call_id=conn.call_id, error=str(exc)
            )

    async def _environment(self, conn: _Connection, reader: asyncio.StreamReader) -> AgiEnv:
        lines: list[str] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.env_timeout_s):
                while True:
                    line = await _readline(reader, "environment")
                    if not line:
                        break
                    lines.append(line)
                    size += len(line) + 1
                    if len(lines) > MAX_ENV_LINES or size > MAX_ENV_BYTES:
                        raise _EnvTooLarge(
                            f"environment over {MAX_ENV_LINES} lines or {MAX_ENV_BYTES} bytes"
                        )
        except TimeoutError:
            raise AgiTimeout(
                f"environment incomplete after {self.limits.env_timeout_s} s ({len(lines)} lines)"
            ) from None
        return parse_environment(lines)

    def _secret_matches(self, env: AgiEnv) -> bool:
        given = env.args[0].encode("utf-8", "replace") if env.args else b""
        return hmac.compare_digest(given, self._secret)

    def _fault(self, conn: _Connection, reason: str, detail: object) -> None:
        self.stats.faults[reason] = self.stats.faults.get(reason, 0) + 1
        log.warning(
            f"agi.{reason}",
            peer=conn.peer,
            phase=conn.phase,
            call_id=conn.call_id or None,
            detail=str(detail)[:200],
        )


class _EnvTooLarge(AgiProtocolError):
    pass


def _reason(exc: AgiError, phase: str) -> str:
    """The ``agi.<reason>`` log event for a fault."""
    if isinstance(exc, AgiTimeout):
        return "env_timeout" if phase == "environment" else "timeout"
    if isinstance(exc, AgiLineTooLong):
        return "line_too_long"
    if isinstance(exc, AgiDisconnected):
        return "disconnected"
    if isinstance(exc, _EnvTooLarge):
        return "env_too_large"
    if isinstance(exc, AgiHangup):
        return "hangup"
    if isinstance(exc, AgiCommandError):
        return "command_failed"
    if isinstance(exc, AgiProtocolError):
        return "env_malformed" if phase == "environment" else "protocol_error"
    return "error"
