"""The agent page's static files (CSS, script, icon), read once from the package."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

STATIC_TYPES: Final = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Static:
    """One file: its bytes, content type and ETag."""

    body: bytes
    content_type: str
    etag: str


def load_static() -> dict[str, Static]:
    """Every known file type in ``pbxbridge/web/static``, by file name."""
    out: dict[str, Static] = {}
    folder = resources.files("pbxbridge.web").joinpath("static")
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in STATIC_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            out[entry.name] = Static(body, STATIC_TYPES[suffix], etag)
    return out
