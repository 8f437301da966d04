"""A minimal autoescaping template renderer (no template engine dependency).

Templates are package files (``pbxbridge/web/templates/*.html``) with two kinds
of placeholders:

* ``{{ name }}``: the value, HTML-escaped (quotes included) - always safe, also
  inside attribute values;
* ``{{! name }}``: a :class:`Markup` value built by this module's helpers
  (anything else is refused, so unescaped text cannot slip in).

Dynamic markup (table rows, lists) is built with :func:`tag`, which escapes
every text and attribute value it is given.
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{(!?)\s*([a-z_][a-z0-9_]*)\s*\}\}")
_VOID = frozenset({"input", "br", "meta", "link", "img"})


class Markup(str):
    """HTML produced by this module (already escaped where needed)."""

    __slots__ = ()


EMPTY = Markup("")


def escape(value: object) -> Markup:
    """Escape any value for HTML text or a quoted attribute.

    Args:
        value: The value (``str()`` is taken; ``Markup`` passes unchanged).

    Returns:
        The escaped text.
    """
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def script_json(data: object) -> Markup:
    """``data`` as JSON safe to place inside ``<script type="application/json">``.

    Inside such a block only ``</`` could end it early; ``<``, ``>`` and ``&``
    are written as JSON unicode escapes, which JSON.parse reads back unchanged.

    Args:
        data: JSON-serialisable data (non-ASCII kept as is).

    Returns:
        The JSON text.
    """
    text = json.dumps(data, ensure_ascii=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def join(parts: list[Markup]) -> Markup:
    """Concatenate markup.

    Args:
        parts: Markup pieces.

    Returns:
        One piece.
    """
    return Markup("".join(parts))


def tag(element: str, /, *children: object, **attrs: object) -> Markup:
    """An element with escaped attributes and children.

    Attribute names ending in ``_`` lose it (``class_`` → ``class``); ``_`` in
    names becomes ``-`` (``data_id`` → ``data-id``). ``True`` renders a bare
    attribute, ``None``/``False`` omits it. Children that are not
    :class:`Markup` are escaped.

    Args:
        element: Element name.
        *children: Content.
        **attrs: Attributes.

    Returns:
        The element.
    """
    out = [f"<{element}"]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        out.append(f" {attr}" if value is True else f' {attr}="{escape(value)}"')
    out.append(">")
    if element in _VOID:
        return Markup("".join(out))
    out.extend(escape(child) for child in children)
    out.append(f"</{element}>")
    return Markup("".join(out))


@cache
def _template(name: str) -> str:
    return resources.files("pbxbridge.web").joinpath("templates", name).read_text("utf-8")


def render(name: str, **values: object) -> str:
    """Render a template.

    Args:
        name: File name below ``templates/``.
        **values: Placeholder values.

    Returns:
        The HTML.

    Raises:
        KeyError: For a placeholder without value.
        TypeError: For ``{{! x }}`` whose value is not :class:`Markup`.
    """

    def fill(match: re.Match[str]) -> str:
        raw, key = match.group(1), match.group(2)
        value = values[key]
        if raw:
            if not isinstance(value, Markup):
                raise TypeError(f"{{{{! {key} }}}} needs Markup, got {type(value).__name__}")
            return value
        return escape(value)

    return _PLACEHOLDER.sub(fill, _template(name))
