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
    Failed sign-ins are counted per agent id and per client address in a
    sliding window; over the limit, sign-ins are refused (HTTP 429) until the
    window has passed, before any password is checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pbxbridge.web.agents import Agent

SESSION_LIFETIME_S: Final = 12 * 3600
"""A working day and then some: sign in again the next morning."""
MAX_COOKIE_CHARS: Final = 512
LOGIN_TOKEN_LIFETIME_S: Final = 3600


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
    """

    def __init__(
        self,
        secret: bytes,
        *,
        lifetime_s: float = SESSION_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret needs at least 16 bytes")
        self._secret = secret
        self._lifetime = lifetime_s
        self._clock = clock
        self._revoked: dict[str, float] = {}

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
        if len(parts) != 5 or parts[0] != "v1" or not parts[2].isdigit():
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

    def expires_in(self, session: Session) -> float:
        """Seconds until the session ends.

        Args:
            session: The session.

        Returns:
            Seconds (may be negative).
        """
        return session.issued + self._lifetime - self._clock()

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
        if not stamp.isdigit() or not 0 <= self._clock() - int(stamp) < LOGIN_TOKEN_LIFETIME_S:
            return False
        return hmac.compare_digest(
            self.login_token(nonce).encode(), token.encode("utf-8", "replace")
        )


class LoginLimiter:
    """Counts failed sign-ins per agent id and per client address.

    Args:
        per_agent: Failures allowed per agent id within the window.
        per_address: Failures allowed per client address within the window.
        window_s: The sliding window.
        clock: Monotonic seconds.
        max_keys: Bound on remembered ids and addresses (oldest forgotten).
    """

    def __init__(
        self,
        *,
        per_agent: int = 5,
        per_address: int = 20,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._limits = {"agent": per_agent, "address": per_address}
        self._window = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, agent: str, address: str) -> float:
        """Seconds until a sign-in may be tried again (0: now).

        Args:
            agent: The agent id typed.
            address: The client address.

        Returns:
            0 when under both limits, else the seconds until the oldest
            counted failure leaves the window.
        """
        now = self._clock()
        wait = 0.0
        for kind, value in (("agent", agent), ("address", address)):
            times = self._recent((kind, value), now)
            if len(times) >= self._limits[kind]:
                wait = max(wait, times[0] + self._window - now)
        return wait

    def failed(self, agent: str, address: str) -> None:
        """Count a failed sign-in.

        Args:
            agent: The agent id typed.
            address: The client address.
        """
        now = self._clock()
        for key in (("agent", agent), ("address", address)):
            times = self._failures.setdefault(key, deque())
            self._failures.move_to_end(key)
            times.append(now)
            while len(times) > self._limits[key[0]]:
                times.popleft()
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, agent: str) -> None:
        """Forget an agent's failures after a good sign-in.

        Args:
            agent: The agent id.
        """
        self._failures.pop(("agent", agent), None)
