"""SVG text for the posters: Plotly text escaped for XML, coordinates written short, and a
text's width estimated from its characters (where Plotly measures drawn text)."""

from __future__ import annotations

import html

CHAR = 0.6  # a character's width, in font sizes, where _CHAR_WIDTHS has none


def text_of(value: object) -> str:
    """Plotly text (escaped for Plotly by ``style.plot_text``) as SVG text: decoded once,
    then escaped for XML, so a ``<b>`` in a user's choice reads literally."""
    return _xml(html.unescape(str(value)))


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attr(text: str) -> str:
    """Text for an attribute's value (in double quotes)."""
    return _xml(text).replace('"', "&quot;")


def num(v: float) -> str:
    """A coordinate, to a tenth of a pixel (what the eye can tell)."""
    s = f"{v:.1f}"
    if s.endswith(".0"):
        s = s[:-2]
    return "0" if s == "-0" else s


def text_width(text: str, size: float) -> float:
    """About how wide a text is drawn (what Plotly's automargin and legend measure)."""
    return sum(_CHAR_WIDTHS.get(c, CHAR) for c in html.unescape(text)) * size


# Character widths in font sizes, by class: a sans-serif's narrow and wide letters.
_CHAR_WIDTHS = {
    **dict.fromkeys("ijlI.,:;'|! ·", 0.3),
    **dict.fromkeys("frt()[]-/", 0.38),
    **dict.fromkeys("mwMW%=+≤≥−×", 0.88),
    **dict.fromkeys("ABCDEFGHKLNOPQRSTUVXYZ", 0.68),
    **dict.fromkeys("0123456789", 0.64),
}
