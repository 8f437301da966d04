"""Agent passwords: scrypt hashes in a self-describing text form (stdlib only).

Format (PHC-style, one line, safe in YAML and in ``agent: hash`` lines)::

    $scrypt$ln=15,r=8,p=1$<salt, base64 without padding>$<key, base64 without padding>

``ln`` is log2 of scrypt's cost ``N``. The parameters travel with the hash, so
they can be raised later without invalidating existing entries. Verification
compares in constant time (:func:`hmac.compare_digest`) and refuses parameter
sets outside sane bounds (a hand-edited file must not make one sign-in take
gigabytes of memory).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

DEFAULT_LN: Final = 15
"""N = 32768: about 50-100 ms and 32 MiB per hash on a small server."""
MIN_LN: Final = 10
MAX_LN: Final = 20
MAX_R: Final = 32
MAX_P: Final = 16
SALT_BYTES: Final = 16
KEY_BYTES: Final = 32
MIN_AGENT_PASSWORD_CHARS: Final = 10
"""Shortest password ``pbxbridge agent-password`` hashes (the page itself
checks whatever hash it is given; the limit is for new passwords)."""
MAX_PASSWORD_CHARS: Final = 1024
"""Longer "passwords" are refused before hashing (cheap denial of service otherwise)."""


class PasswordFormatError(ValueError):
    """A stored hash is not in the format above."""


@dataclass(frozen=True, slots=True)
class ScryptHash:
    """A parsed hash.

    Attributes:
        ln: log2 of N.
        r: Block size.
        p: Parallelism.
        salt: The salt.
        key: The derived key.
    """

    ln: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def text(self) -> str:
        """The hash in its stored form."""
        return f"$scrypt$ln={self.ln},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.key)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise PasswordFormatError("invalid base64 in the hash") from None


def _derive(password: str, salt: bytes, ln: int, r: int, p: int, size: int) -> bytes:
    n = 1 << ln
    # scrypt needs 128 * r * N bytes (plus a little): allow exactly that.
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=128 * r * n + 4 * 1024 * 1024,
        dklen=size,
    )


def hash_password(password: str, *, ln: int = DEFAULT_LN, r: int = 8, p: int = 1) -> str:
    """Hash a password for the agents file.

    Args:
        password: The password (non-empty, at most 1024 characters).
        ln: log2 of scrypt's N (10..20).
        r: Block size.
        p: Parallelism.

    Returns:
        The self-describing hash text.

    Raises:
        ValueError: On an empty or overlong password or bad parameters.
    """
    if not password or len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"a password has 1 to {MAX_PASSWORD_CHARS} characters")
    _check_params(ln, r, p)
    salt = secrets.token_bytes(SALT_BYTES)
    return ScryptHash(ln, r, p, salt, _derive(password, salt, ln, r, p, KEY_BYTES)).text()


def _check_params(ln: int, r: int, p: int) -> None:
    if not (MIN_LN <= ln <= MAX_LN and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise PasswordFormatError(
            f"scrypt parameters out of range (ln {MIN_LN}..{MAX_LN}, r 1..{MAX_R}, p 1..{MAX_P})"
        )


def parse_hash(text: str) -> ScryptHash:
    """Parse a stored hash.

    Args:
        text: ``$scrypt$ln=..,r=..,p=..$salt$key``.

    Returns:
        The parsed hash.

    Raises:
        PasswordFormatError: If it is not a valid hash of this format.
    """
    parts = text.strip().split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "scrypt":
        raise PasswordFormatError("expected $scrypt$ln=..,r=..,p=..$salt$key")
    params: dict[str, int] = {}
    for item in parts[2].split(","):
        name, sep, value = item.partition("=")
        if not sep or name not in {"ln", "r", "p"} or not value.isdigit() or name in params:
            raise PasswordFormatError(f"bad scrypt parameter {item!r}")
        params[name] = int(value)
    if set(params) != {"ln", "r", "p"}:
        raise PasswordFormatError("scrypt parameters ln, r and p are required")
    _check_params(params["ln"], params["r"], params["p"])
    salt, key = _unb64(parts[3]), _unb64(parts[4])
    if len(salt) < 8 or not 16 <= len(key) <= 64:
        raise PasswordFormatError("salt or key too short")
    return ScryptHash(params["ln"], params["r"], params["p"], salt, key)


def verify_password(password: str, stored: ScryptHash) -> bool:
    """Check a password against a stored hash (constant-time compare).

    Slow on purpose (scrypt): call it from a worker thread.

    Args:
        password: What the agent typed.
        stored: The parsed hash from the agents file.

    Returns:
        Whether it matches.
    """
    if not password or len(password) > MAX_PASSWORD_CHARS:
        return False
    candidate = _derive(password, stored.salt, stored.ln, stored.r, stored.p, len(stored.key))
    return hmac.compare_digest(candidate, stored.key)


def dummy_hash(ln: int = DEFAULT_LN) -> ScryptHash:
    """A hash no password matches, to spend the same time on unknown agent ids.

    Args:
        ln: Cost like the real entries.

    Returns:
        A random hash.
    """
    return ScryptHash(ln, 8, 1, secrets.token_bytes(SALT_BYTES), secrets.token_bytes(KEY_BYTES))
