"""The agent page's settings and who a request comes from (trusted proxies)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

MIN_SESSION_SECRET_CHARS: Final = 16
"""A configured session secret shorter than this disables the page."""


@dataclass(frozen=True, slots=True)
class WebConfig:
    """Settings of the agent page.

    Attributes:
        agents_file: Path of the agents file (``PBXBRIDGE_AGENTS_FILE``).
        secure_cookies: Mark cookies ``Secure`` (behind TLS;
            ``PBXBRIDGE_WEB_SECURE_COOKIES``).
        session_secret: HMAC key for sessions; empty: random per start.
            Shorter than :data:`MIN_SESSION_SECRET_CHARS`: the page refuses
            to serve (503 and ``/healthz`` error), routing goes on.
        trusted_proxies: Addresses/networks of reverse proxies whose
            ``X-Forwarded-For`` is believed (``PBXBRIDGE_WEB_TRUSTED_PROXIES``).
        state_dir: Directory for the sign-out list (kept across restarts when
            a session secret is configured); empty: in memory only.
    """

    agents_file: str
    secure_cookies: bool = False
    session_secret: str = ""
    trusted_proxies: tuple[str, ...] = ()
    state_dir: str = ""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(items: tuple[str, ...]) -> tuple[Network, ...]:
    """Parse trusted proxy addresses or networks (``ValueError`` on garbage)."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[v6]:port"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "v4:port"
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: list[str], trusted: tuple[Network, ...]) -> str:
    """The client's address, believing ``X-Forwarded-For`` only from trusted proxies.

    Each proxy appends the address it got the request from, so the right-most
    entry that is not a trusted proxy is the client as far as anyone we trust
    can tell; everything left of it may be made up by the client.

    Args:
        peer: The TCP peer.
        forwarded_for: All ``X-Forwarded-For`` header values, in order.
        trusted: Trusted proxy networks.

    Returns:
        The address used for sign-in limits and logs.
    """
    address = peer or "unknown"
    peer_ip = _ip(address)
    if peer_ip is None or not any(peer_ip in net for net in trusted):
        return address
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            return address  # garbage from an untrusted hop: judge the proxy's hop
        if not any(ip in net for net in trusted):
            return str(ip)
    return str(_ip(hops[0])) if hops else address
