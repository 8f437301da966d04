"""Where a sign-in returns to: the page the user opened before signing in.

A page that needs a session sends the browser to the sign-in form with the
page's *app path* (``/supervisor/``, ``/agent/callbacks?tenant=x``) as
``next``; the form carries it in a hidden field and, after a successful
sign-in, the answer's ``Location`` leads there. Every ``Location`` stays
relative to ``/agent/login`` (``./…``, ``../supervisor/…``), so a reverse
proxy's path prefix is kept, as everywhere else on the pages.

``next`` comes from whoever wrote the link, so it is an allow-list, not a
filter: only ``/agent/`` and ``/supervisor/`` and paths below them made of
letters, digits, ``_``, ``-`` and ``/`` (no dots, no empty segment, no
backslash, no percent sign, no scheme, no host), with a query of the same
letters and ``=`` and ``&``. Anything else is dropped and the sign-in goes
to the desk, as before. The supervisor pages are a destination for
supervisors only: an agent sent from there lands on the desk (the board
would answer 403).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

AGENT: Final = "/agent/"
SUPERVISOR: Final = "/supervisor/"
DESK: Final = "./"
"""The desk, relative to the sign-in form (``/agent/login``)."""
MAX_CHARS: Final = 200

# Each repeated segment ends in "/", so the pattern cannot backtrack
# exponentially on a long hostile value.
_NEXT: Final = re.compile(
    r"/(?:agent|supervisor)/(?:[A-Za-z0-9_-]+/)*[A-Za-z0-9_-]*(?:\?[A-Za-z0-9_=&-]*)?"
)


def checked(value: str | None) -> str | None:
    """``value`` if it is an allowed destination, else ``None``.

    Args:
        value: A ``next`` value from a query or a form.

    Returns:
        The app path, unchanged, or ``None``.
    """
    if not value or len(value) > MAX_CHARS or _NEXT.fullmatch(value) is None:
        return None
    return value


def next_query(page: str) -> str:
    """``next=<page>`` for a URL's query (``page`` already :func:`checked`)."""
    return f"next={quote(page, safe='/')}"


def sign_in_location(login: str, path: str, query: str = "") -> str:
    """The sign-in form's address that returns to ``path?query`` afterwards.

    Args:
        login: The form's address relative to the asking page
            (``login``, ``../agent/login``).
        path: The asking page's app path (``request.path``).
        query: Its query string, without ``?`` (dropped if not allowed).

    Returns:
        ``login?next=…``, or ``login`` alone if the page is no destination.
    """
    for wanted in (f"{path}?{query}" if query else path, path):
        if checked(wanted) is not None:
            return f"{login}?{next_query(wanted)}"
    return login


def after_sign_in(value: str | None, *, supervisor: bool) -> str:
    """The ``Location`` (relative to ``/agent/login``) after a sign-in.

    Args:
        value: The form's ``next`` field (checked here again: it is input).
        supervisor: Whether the signed-in agent may see the supervisor pages.

    Returns:
        ``./…`` for an agent page, ``../supervisor/…`` for a supervisor page
        (supervisors only), else the desk (``./``).
    """
    wanted = checked(value)
    if wanted is None:
        return DESK
    if wanted.startswith(AGENT):
        return DESK + wanted.removeprefix(AGENT)
    if supervisor and wanted.startswith(SUPERVISOR):
        return "../supervisor/" + wanted.removeprefix(SUPERVISOR)
    return DESK
