"""Where the web view's templates and static files live (served by the server itself)."""

from __future__ import annotations

import math
from pathlib import Path

from fastapi.templating import Jinja2Templates

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
templates = Jinja2Templates(directory=HERE / "templates")


def partial_plotly() -> Path | None:
    """The partial Plotly bundle scripts/web-assets.sh installed (scatter, scattergl and
    parcoords only), newest version first; ``None`` where it was not installed."""
    found = sorted(VENDOR_DIR.glob("plotly-gl2d-*.min.js"), reverse=True)
    return found[0] if found else None


def fmt(value: object) -> str:
    """Numbers as a person reads them, one format on every page and in the plots' hover text
    (``style.NUMBER``): from 1,000 up whole numbers with thousands separators (never
    ``1.312e+05``), 4 significant digits below, an exponent only under 0.001, and no ``-0``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 1e3:
            text = f"{value:,.0f}"
        elif value != 0 and abs(value) < 1e-3:
            text = f"{value:.3e}"
        else:
            text = f"{value:.4g}"
        return "0" if text in ("-0", "-0.0") else text
    return str(value)


templates.env.filters["fmt"] = fmt
# "latency_ms ≤ 100" → "latency_ms": a broken constraint named in a narrow table cell.
templates.env.filters["first_word"] = lambda text: str(text).split(" ", 1)[0]
