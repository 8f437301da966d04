"""Sessions, CSRF tokens and the sign-in rate limit of the agent page.

Session cookie
    ``v1.<agent>.<issued>.<nonce>.<mac>``: a fresh random 128-bit nonce per
    sign-in, the agent id (base64url) and the issue time, authenticated with
    HMAC-SHA256 under the session secret. The MAC also covers a fingerprint of
    the agent's password hash, so a new password ends every old session; an
    agent removed from the agents file has no session either. Sessions last at
    most :data:`SESSION_LIFETIME_S`. Signing out revokes the nonce. With a
    configured secret (credential ``web-session-password``) sessions survive a
    daemon restart; with the per-start random secret they end with it.

CSRF
    Synchronizer token per session: ``HMAC(secret, "csrf|" + nonce)``, put in
    the page (hidden field / ``X-CSRF-Token`` header) and checked on every
    POST. The sign-in form has its own token bound to a short-lived
    ``pbx_login`` cookie (no login CSRF).

Rate limit
    Sign-in attempts are counted per agent id and per client address in a
    sliding window *before* the password is checked (before any ``await``), and
    a successful attempt is refunded: concurrent attempts cannot all slip under
    the limit while they wait for the hash. Over the limit, sign-ins are
    refused (HTTP 429) until the window has passed. A client that signed in
    successfully as an agent is *known* for that agent: it is judged by its own
    failures only, so failures from elsewhere (an attacker, or everyone behind
    one proxy address) never lock it out. Repeated failures from one client are
    also answered ever more slowly (:meth:`LoginLimiter.delay`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from pbxbridge.web.agents import Agent

SESSION_LIFETIME_S: Final = 12 * 3600
"""A working day and then some: sign in again the next morning."""
MAX_COOKIE_CHARS: Final = 512
LOGIN_TOKEN_LIFETIME_S: Final = 3600
MAX_REVOKED: Final = 100_000
"""Bound on remembered sign-outs (each lives at most a session lifetime)."""

log = structlog.get_logger(__name__)


def _digits(text: str) -> bool:
    # str.isdigit() accepts "²" and other Unicode digits that int() refuses.
    return text.isascii() and text.isdigit()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        return None


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in agent.

    Attributes:
        agent: The agent.
        nonce: The session's random id.
        issued: Unix time of the sign-in.
        token: The cookie value.
        csrf: The session's CSRF token.
    """

    agent: Agent
    nonce: str
    issued: int
    token: str
    csrf: str


class SessionManager:
    """Issues and checks session cookies and CSRF tokens.

    Args:
        secret: HMAC key (at least 16 bytes).
        lifetime_s: Longest session.
        clock: Unix time (tests inject one).
        revocations: File that keeps sign-outs across restarts (only useful
            with a configured secret: a random one ends every session anyway).
            Written atomically; entries leave it when their session would
            have expired. A missing or unreadable file counts as empty.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        lifetime_s: float = SESSION_LIFETIME_S,
        clock: Callable[[], float] = time.time,
        revocations: Path | None = None,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret needs at least 16 bytes")
        self._secret = secret
        self._lifetime = lifetime_s
        self._clock = clock
        self._revocations = revocations
        self._revoked: dict[str, float] = self._load_revoked()

    def _load_revoked(self) -> dict[str, float]:
        if self._revocations is None:
            return {}
        try:
            data = json.loads(self._revocations.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Fail open only as far as a lost file would: sessions still expire.
            log.error("web.revocations_unreadable", path=str(self._revocations), error=str(exc))
            return {}
        now = self._clock()
        if not isinstance(data, dict):
            return {}
        return {
            str(n): float(t) for n, t in data.items() if isinstance(t, (int, float)) and t > now
        }

    def _save_revoked(self) -> None:
        path = self._revocations
        if path is None:
            return
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(self._revoked, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            # The sign-out still holds until the next restart.
            log.error("web.revocations_not_saved", path=str(path), error=exc.strerror)

    def _mac(self, purpose: str, *parts: str | bytes) -> bytes:
        mac = hmac.new(self._secret, purpose.encode(), hashlib.sha256)
        for part in parts:
            mac.update(b"|")
            mac.update(part.encode("utf-8") if isinstance(part, str) else part)
        return mac.digest()

    def issue(self, agent: Agent) -> Session:
        """A new session for an agent who just signed in.

        Args:
            agent: The agent.

        Returns:
            The session (set :attr:`Session.token` as the cookie).
        """
        nonce = _b64(secrets.token_bytes(16))
        issued = int(self._clock())
        agent_part = _b64(agent.id.encode("utf-8"))
        mac = self._mac("session", agent.id, str(issued), nonce, agent.fingerprint)
        token = f"v1.{agent_part}.{issued}.{nonce}.{_b64(mac)}"
        return Session(agent, nonce, issued, token, self.csrf_token(nonce))

    def check(self, token: str | None, lookup: Callable[[str], Agent | None]) -> Session | None:
        """The session a cookie stands for.

        Args:
            token: The cookie value.
            lookup: Agent by id (the agents file in force).

        Returns:
            The session, or ``None`` when the cookie is missing, forged,
            expired, revoked, or its agent is gone or has a new password.
        """
        if not token or len(token) > MAX_COOKIE_CHARS:
            return None
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != "v1" or not _digits(parts[2]):
            return None
        raw_agent, mac = _unb64(parts[1]), _unb64(parts[4])
        if raw_agent is None or mac is None:
            return None
        try:
            agent_id = raw_agent.decode("utf-8")
        except UnicodeDecodeError:
            return None
        issued, nonce = int(parts[2]), parts[3]
        agent = lookup(agent_id)
        if agent is None:
            return None
        expected = self._mac("session", agent_id, str(issued), nonce, agent.fingerprint)
        if not hmac.compare_digest(expected, mac):
            return None
        now = self._clock()
        if not issued - 60 <= now < issued + self._lifetime or nonce in self._revoked:
            return None
        return Session(agent, nonce, issued, token, self.csrf_token(nonce))

    def revoke(self, session: Session) -> None:
        """End a session (sign-out).

        Args:
            session: The session.
        """
        now = self._clock()
        self._revoked = {n: t for n, t in self._revoked.items() if t > now}
        self._revoked[session.nonce] = session.issued + self._lifetime
        while len(self._revoked) > MAX_REVOKED:
            del self._revoked[next(iter(self._revoked))]
        self._save_revoked()

    def csrf_token(self, nonce: str) -> str:
        """The CSRF token of a session.

        Args:
            nonce: The session's nonce.

        Returns:
            The token.
        """
        return _b64(self._mac("csrf", nonce))

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        """Whether a submitted CSRF token belongs to the session.

        Args:
            session: The session.
            token: What the request carried.

        Returns:
            True only for the session's own token.
        """
        if not token or len(token) > 100:
            return False
        return hmac.compare_digest(session.csrf.encode(), token.encode("utf-8", "replace"))

    def new_login_nonce(self) -> str:
        """A value for the sign-in form's cookie, carrying its issue time.

        Returns:
            ``<time>.<random>``.
        """
        return f"{int(self._clock())}.{_b64(secrets.token_bytes(16))}"

    def login_token(self, nonce: str) -> str:
        """The sign-in form's CSRF token for its cookie value.

        Args:
            nonce: The ``pbx_login`` cookie value.

        Returns:
            The token.
        """
        return _b64(self._mac("login", nonce))

    def login_ok(self, nonce: str | None, token: str | None) -> bool:
        """Whether the sign-in form's token matches its cookie and is fresh.

        Args:
            nonce: The ``pbx_login`` cookie value.
            token: The form's ``csrf`` field.

        Returns:
            True when both are present, match, and are under an hour old.
        """
        if not nonce or not token or len(nonce) > 100 or len(token) > 100:
            return False
        stamp, _, _ = nonce.partition(".")
        if not _digits(stamp) or not 0 <= self._clock() - int(stamp) < LOGIN_TOKEN_LIFETIME_S:
            return False
        return hmac.compare_digest(
            self.login_token(nonce).encode(), token.encode("utf-8", "replace")
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One counted sign-in attempt (refunded when it succeeds).

    Attributes:
        agent: The agent id typed.
        address: The client address.
        keys: The counters it was added to.
        stamp: When it was counted.
    """

    agent: str
    address: str
    keys: tuple[tuple[str, str], ...]
    stamp: float


class LoginLimiter:
    """Counts sign-in attempts per agent id and per client address.

    Args:
        per_agent: Failures allowed per agent id (and per known client of an
            agent) within the window.
        per_address: Failures allowed per client address within the window.
        window_s: The sliding window.
        clock: Monotonic seconds.
        max_keys: Bound on remembered ids and addresses (oldest forgotten).
        known_s: How long a successful sign-in makes its client known.
        delay_base_s: Answer delay after the second failure in a row from a
            client; doubles with each further one.
        delay_max_s: Longest answer delay.
    """

    def __init__(
        self,
        *,
        per_agent: int = 5,
        per_address: int = 20,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
        known_s: float = 7 * 86400.0,
        delay_base_s: float = 0.25,
        delay_max_s: float = 4.0,
    ) -> None:
        self._limits = {"agent": per_agent, "address": per_address, "known": per_agent}
        self._window = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._known_s = known_s
        self.delay_base_s = delay_base_s
        self.delay_max_s = delay_max_s
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def _is_known(self, agent: str, address: str, now: float) -> bool:
        until = self._known.get((agent, address))
        if until is None:
            return False
        if until <= now:
            del self._known[(agent, address)]
            return False
        return True

    def _keys(self, agent: str, address: str, now: float) -> tuple[tuple[str, str], ...]:
        if self._is_known(agent, address, now):
            # "\0" cannot occur in an agent id (printable only).
            return (("known", f"{agent}\0{address}"),)
        return (("agent", agent), ("address", address))

    def retry_after(self, agent: str, address: str) -> float:
        """Seconds until a sign-in may be tried again (0: now).

        Args:
            agent: The agent id typed.
            address: The client address.

        Returns:
            0 when under the limits, else the seconds until the oldest
            counted attempt leaves the window.
        """
        now = self._clock()
        wait = 0.0
        for key in self._keys(agent, address, now):
            times = self._recent(key, now)
            if len(times) >= self._limits[key[0]]:
                wait = max(wait, times[0] + self._window - now)
        return wait

    def begin(self, agent: str, address: str) -> Attempt | None:
        """Count an attempt now, before its password is checked.

        Call without an ``await`` between the check and the count, so that
        concurrent attempts see each other.

        Args:
            agent: The agent id typed.
            address: The client address.

        Returns:
            The counted attempt, or ``None`` when over a limit
            (see :meth:`retry_after` for how long).
        """
        if self.retry_after(agent, address) > 0:
            return None
        now = self._clock()
        keys = self._keys(agent, address, now)
        for key in keys:
            times = self._failures.setdefault(key, deque())
            self._failures.move_to_end(key)
            times.append(now)
            while len(times) > self._limits[key[0]]:
                times.popleft()
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
        return Attempt(agent, address, keys, now)

    def cancel(self, attempt: Attempt) -> None:
        """Uncount an attempt that was never judged (e.g. refused as busy).

        Args:
            attempt: From :meth:`begin`.
        """
        for key in attempt.keys:
            times = self._failures.get(key)
            if times is not None:
                with contextlib.suppress(ValueError):
                    times.remove(attempt.stamp)
                if not times:
                    del self._failures[key]

    def succeeded(self, attempt: Attempt) -> None:
        """Refund a good sign-in, forget the agent's failures, know the client.

        Args:
            attempt: From :meth:`begin`.
        """
        self.cancel(attempt)
        self._failures.pop(("agent", attempt.agent), None)
        self._failures.pop(("known", f"{attempt.agent}\0{attempt.address}"), None)
        key = (attempt.agent, attempt.address)
        self._known[key] = self._clock() + self._known_s
        self._known.move_to_end(key)
        while len(self._known) > self._max_keys:
            self._known.popitem(last=False)

    def delay(self, attempt: Attempt) -> float:
        """How long to hold back the answer to a failed attempt.

        Growing with the client's recent failures, so that guessing from one
        client slows down long before the hard limit; the wait holds no
        hashing slot.

        Args:
            attempt: The failed attempt (already counted).

        Returns:
            Seconds: 0 for a first failure, then base, 2 x base, ... up to
            the maximum.
        """
        now = self._clock()
        failures = max(len(self._recent(key, now)) for key in attempt.keys if key[0] != "agent")
        if failures < 2 or self.delay_base_s <= 0:
            return 0.0
        return float(min(self.delay_max_s, self.delay_base_s * 2 ** (failures - 2)))
