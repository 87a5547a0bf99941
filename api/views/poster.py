"""A static SVG "poster" of a Plotly figure: what the study page shows at once, before Plotly
has parsed its bundle and drawn the interactive plot over it.

It draws the subset of Plotly the study page's figures use (``figures.py``, ``curves.py``,
``parallel_lines.py``) as Plotly would lay it out: the same plot area, axis ranges, ticks,
markers, lines, legend and colour bar, so the swap to the interactive plot does not jump. No
hover, no zoom. Where Plotly measures drawn text (automatic margins, the legend's spacing), a
text's width is estimated from its characters (``poster_text.text_width``), so those can be
off by a few pixels in another font. Axes live in ``poster_axes``, markers and colours in
``poster_marks``.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Sequence
from typing import Any

from api.views import style
from api.views.poster_axes import (
    Axis,
    autorange,
    axis_kind,
    axis_ticks,
    categories,
    epoch_ms,
    linear_ticks,
    tick_number,
    tick_size,
    tick_text,
)
from api.views.poster_marks import (
    colour_at,
    colour_range,
    is_open,
    relative,
    scale_of,
    stroke_attrs,
    symbol_path,
)
from api.views.poster_text import attr, num, text_of, text_width

Figure = style.Figure

LEGEND_ROW = 19.0  # Plotly's legend item height at a 12 px font

_ids = itertools.count(1)


def poster(figure: Figure, width: int, height: int, key: str = "") -> str:
    """Static SVG of a Plotly figure (the subset the study page's figures use).

    ``key`` prefixes the SVG's ids (its clip path, its colour bar's gradient) so several posters on
    one page never share one; without it a process-wide counter makes them unique.
    """
    prefix = _ident(key) if key else f"p{next(_ids)}"
    return _Poster(figure, width, height, prefix).svg()


def _ident(key: str) -> str:
    return "p" + "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


class _Poster:
    def __init__(self, figure: Figure, width: int, height: int, prefix: str) -> None:
        self.w, self.h, self.id = float(width), float(height), prefix
        self.layout: dict[str, Any] = figure.get("layout") or {}
        font = self.layout.get("font") or {}
        self.font_size = float(font.get("size", 12))
        self.font_family = str(font.get("family", style.FONT))
        self.colour = str(font.get("color", "#444"))
        self.all_traces: list[dict[str, Any]] = list(figure.get("data") or [])
        self.traces = [t for t in self.all_traces if t.get("visible", True) is True]
        self.out: list[str] = []

    def svg(self) -> str:
        head = (
            f'<svg class="poster" xmlns="http://www.w3.org/2000/svg" width="{int(self.w)}"'
            f' height="{int(self.h)}" viewBox="0 0 {int(self.w)} {int(self.h)}" role="img"'
            f' aria-label="{attr(self._label())}" font-family="{attr(self.font_family)}"'
            f' font-size="{num(self.font_size)}" fill="{attr(self.colour)}">'
        )
        bg = self.layout.get("paper_bgcolor", "#fff")
        self.out.append(f'<rect width="100%" height="100%" fill="{attr(bg)}"/>')
        if any(t.get("type") == "parcoords" for t in self.all_traces):
            # WebGL parallel coordinates: the page never asks a poster of them; a frame
            # keeps the place.
            self.out.append('<rect class="frame" x="0.5" y="0.5" width="99%" height="99%"')
            self.out.append(' fill="none" stroke="#c5ccd3"/>')
            return head + "".join(self.out) + "</svg>"
        self._draw()
        return head + "".join(self.out) + "</svg>"

    def _label(self) -> str:
        titles = [
            html.unescape(str(((self.layout.get(a) or {}).get("title") or {}).get("text") or ""))
            for a in ("yaxis", "xaxis")
        ]
        if all(titles):
            return f"{titles[0]} by {titles[1]}"
        return next((t for t in titles if t), "plot")

    # -- layout ---------------------------------------------------------------------------

    def _draw(self) -> None:
        rows = self._place()
        self._grid()
        self._shapes("below")
        self._traces()
        self._shapes("above")
        self._axis_labels()
        self._draw_legend(rows)
        self._draw_menus()
        if self.bar is not None:
            self._draw_bar(self.bar)

    def _place(self) -> list[list[tuple[float, int, dict[str, Any]]]]:
        """Lay the figure out as Plotly would: the axes' kinds, the margins (pushed by the
        legend, buttons, tick labels, titles and colour bar), the ranges and the ticks; the
        legend's rows."""
        margin = {"l": 80.0, "r": 80.0, "t": 100.0, "b": 80.0}
        margin.update({k: float(v) for k, v in (self.layout.get("margin") or {}).items()})
        xs = [v for t in self.traces for v in t.get("x") or []]
        ys = [v for t in self.traces for v in t.get("y") or []]
        xspec = self.layout.get("xaxis") or {}
        yspec = self.layout.get("yaxis") or {}
        self.x = Axis(xspec, axis_kind(xspec, xs))
        self.y = Axis(yspec, axis_kind(yspec, ys))
        for axis, values in ((self.x, xs), (self.y, ys)):
            if axis.kind == "category":
                axis.categories = categories(axis.spec, values)
        self.legend = self._legend_items()
        self.bar = next(
            (
                t["marker"]
                for t in self.traces
                if isinstance(t.get("marker"), dict) and t["marker"].get("showscale")
            ),
            None,
        )
        self.menus = self._menu_buttons()
        fs = self.font_size
        # The top margin grows to hold the legend rows above the plot.
        left, right = margin["l"], margin["r"]
        rows = self._legend_rows(self.w - left - right)
        above = max(self._legend_height(rows) if rows else 0.0, self._menu_height())
        if above:
            # The legend and the buttons sit 2 % of the plot's height above it (y = 1.02).
            need = above + 12 + 0.02 * (self.h - margin["b"])
            margin["t"] = max(margin["t"], round(need / 1.02))
        if self.x.visible and xspec.get("side") == "top":
            margin["t"] = max(margin["t"], fs * 1.3 + 6)
        if self.x.visible and xspec.get("automargin") and xspec.get("side") != "top":
            # The tick labels (two lines under a date axis's first tick, a raised exponent)
            # and the title under them.
            lines = 2 if self.x.kind == "date" else 1
            title = (xspec.get("title") or {}).get("text")
            standoff = float((xspec.get("title") or {}).get("standoff", 6))
            need = 6 + lines * 1.3 * fs + (round(fs * 1.2) * 1.3 + standoff if title else 0)
            if self.x.kind == "log" and xspec.get("exponentformat") == "power":
                need += 0.25 * 1.3 * fs  # its powers of ten are a size up
            margin["b"] = max(margin["b"], round(need))
        top, bottom = margin["t"], self.h - margin["b"]
        self.y.p0, self.y.p1 = bottom, top
        self._range(self.y, bottom - top)
        self.y.ticks = axis_ticks(self.y, bottom - top, "y") if self.y.visible else []
        if self.y.visible and yspec.get("automargin"):
            label_w = max((text_width(t, fs) for _, t in self.y.ticks), default=0.0)
            title = (yspec.get("title") or {}).get("text")
            standoff = float((yspec.get("title") or {}).get("standoff", 6))
            need = label_w + 8 + (round(fs * 1.2) * 1.3 + standoff if title else 0)
            left = max(left, round(need))
        bar_w = self._bar_width() if self.bar is not None else 0.0
        plot_w = self.w - left - right
        if bar_w:
            # Plotly puts the bar at x = 1.02 of the plot and pushes the right margin for it.
            plot_w = min(plot_w, (self.w - left - bar_w) / 1.02)
        self.x.p0, self.x.p1 = left, left + plot_w
        self._range(self.x, plot_w)
        self.x.ticks = axis_ticks(self.x, plot_w, "x") if self.x.visible else []
        if self.x.ticks and xspec.get("automargin") and not bar_w:
            # A label near the right end sticking out of the plot pushes the margin by as
            # much (as Plotly does; not one at the very end of the range).
            at, text = max(self.x.ticks, key=lambda tick: self.x.px(tick[0]))
            over = self.x.px(at) + text_width(text, fs) / 2 - (self.w - right)
            if over > 0 and abs(self.x.px(at) - (self.w - right)) > 0.5:
                plot_w -= round(over)
                self.x.p1 = left + plot_w
                self._range(self.x, plot_w)
                self.x.ticks = axis_ticks(self.x, plot_w, "x")
        self.box = (left, top, left + plot_w, bottom)
        return rows

    def _range(self, axis: Axis, length: float) -> None:
        given = axis.spec.get("range")
        if given is not None and len(given) == 2:
            lo, hi = given
            if axis.kind == "date":
                lo, hi = epoch_ms(lo), epoch_ms(hi)
            if lo is not None and hi is not None:
                axis.lo, axis.hi = float(lo), float(hi)
                return
        letter = "x" if axis is self.x else "y"
        extremes = []
        for t in self.traces:
            values = [axis.to_l(v) for v in t.get(letter) or []]
            finite = [v for v in values if v is not None]
            if not finite:
                continue
            mode = str(t.get("mode", "lines+markers"))
            # Plotly pads an axis by 5 % of its length, and by the markers' size over 1.6 (at
            # least 3 px); a trace of lines alone is not padded along x.
            padded = letter == "y" or "markers" in mode or "text" in mode
            pad = 0.05 * length if padded else 0.0
            if "markers" in mode:
                size = (t.get("marker") or {}).get("size", 6)
                size = max(size) if isinstance(size, list) else float(size)
                pad += max(size / 1.6, 3.0)
            extremes.append((min(finite), max(finite), pad))
        axis.lo, axis.hi = autorange(axis, extremes, length, letter)
        if axis.kind == "category" and not extremes:
            axis.lo, axis.hi = -0.5, max(0.5, len(axis.categories) - 0.5)

    # -- drawing ------------------------------------------------------------------------------

    def _grid(self) -> None:
        left, top, right, bottom = self.box
        parts = []
        plot_bg = self.layout.get("plot_bgcolor", "#fff")
        if plot_bg != self.layout.get("paper_bgcolor", "#fff"):
            parts.append(
                f'<rect x="{num(left)}" y="{num(top)}" width="{num(right - left)}"'
                f' height="{num(bottom - top)}" fill="{attr(str(plot_bg))}"/>'
            )
        for axis, vertical in ((self.x, True), (self.y, False)):
            if not axis.visible or axis.spec.get("showgrid", True) is False:
                continue
            colour = axis.spec.get("gridcolor", "#eee")
            path = ""
            for v, _ in axis.ticks:
                p = num(axis.px(v))
                path += (
                    f"M{p},{num(top)}V{num(bottom)}"
                    if vertical
                    else f"M{num(left)},{p}H{num(right)}"
                )
            if path:
                parts.append(f'<path class="grid" d="{path}" stroke="{attr(colour)}" fill="none"/>')
        self.out.append("".join(parts))

    def _axis_labels(self) -> None:
        left, top, right, bottom = self.box
        fs = self.font_size
        out = self.out
        for axis, letter in ((self.x, "x"), (self.y, "y")):
            spec = axis.spec
            if not axis.visible:
                continue
            # Plotly shows the axis line by default once a line colour is given.
            if spec.get("showline", bool(spec.get("linecolor"))):
                colour = attr(spec.get("linecolor", "#444"))
                d = (
                    f"M{num(left)},{num(bottom)}H{num(right)}"
                    if letter == "x"
                    else f"M{num(left)},{num(top)}V{num(bottom)}"
                )
                out.append(f'<path d="{d}" stroke="{colour}" fill="none"/>')
            on_top = spec.get("side") == "top"
            powers = axis.kind == "log" and spec.get("tickvals") is None
            labels = []
            for v, text in axis.ticks:
                p = num(axis.px(v))
                lines = text.split("\n")
                size = tick_size(axis, v, text) * fs
                font = f' font-size="{num(size)}"' if size != fs else ""
                if letter == "x":
                    y = top - 3.4 if on_top else bottom + 2.2 + size * 1.1
                    body = tick_text(lines[0], powers) + "".join(
                        f'<tspan x="{p}" dy="{num(fs * 1.3)}">{text_of(line)}</tspan>'
                        for line in lines[1:]
                    )
                    labels.append(f'<text x="{p}" y="{num(y)}"{font}>{body}</text>')
                else:
                    labels.append(
                        f'<text x="{num(left - 3)}" y="{p}" dy=".35em"{font}>'
                        f"{tick_text(text, powers)}</text>"
                    )
            anchor = "middle" if letter == "x" else "end"
            out.append(f'<g class="{letter}tick" text-anchor="{anchor}">{"".join(labels)}</g>')
            title = (spec.get("title") or {}).get("text")
            if not title:
                continue
            standoff = float((spec.get("title") or {}).get("standoff", 6))
            ts = round(fs * 1.2)  # Plotly's titles are a size up from the ticks
            if letter == "x":
                rows = max((t.count("\n") + 1 for _, t in axis.ticks), default=1)
                tick = max((tick_size(axis, v, t) for v, t in axis.ticks), default=1.0) * fs
                y = bottom + 1 + tick * 1.3 * rows + standoff + ts * 0.8
                out.append(
                    f'<text class="xtitle" x="{num((left + right) / 2)}" y="{num(y)}"'
                    f' text-anchor="middle" font-size="{ts}">{text_of(title)}</text>'
                )
            else:
                label_w = max((text_width(t, fs) for _, t in axis.ticks), default=0.0)
                x = left - 3 - label_w - standoff - ts * 0.25
                mid = num((top + bottom) / 2)
                out.append(
                    f'<text class="ytitle" x="{num(x)}" y="{mid}" text-anchor="middle"'
                    f' font-size="{ts}" transform="rotate(-90 {num(x)} {mid})">'
                    f"{text_of(title)}</text>"
                )

    def _shapes(self, layer: str) -> None:
        left, top, right, bottom = self.box
        for shape in self.layout.get("shapes") or []:
            if shape.get("layer", "above") != layer:
                continue
            xy = []
            for axis, ref, k0, k1, a, b in (
                (self.x, shape.get("xref", "x"), "x0", "x1", left, right),
                (self.y, shape.get("yref", "y"), "y0", "y1", bottom, top),
            ):
                for k in (k0, k1):
                    v = shape.get(k, 0)
                    if ref == "paper":
                        xy.append(a + (b - a) * float(v))
                    else:
                        at = axis.to_l(v)
                        xy.append(axis.px(at) if at is not None else a)
            x0, x1, y0, y1 = xy
            line = shape.get("line") or {}
            width = float(line.get("width", 2))
            colour = str(line.get("color", "#444"))
            stroke = stroke_attrs(colour, width, line.get("dash")) if width > 0 else ""
            opacity = shape.get("opacity")
            extra = f' opacity="{attr(str(opacity))}"' if opacity is not None else ""
            if shape.get("type") == "rect":
                fill = attr(shape.get("fillcolor", "none"))
                self.out.append(
                    f'<rect x="{num(min(x0, x1))}" y="{num(min(y0, y1))}"'
                    f' width="{num(abs(x1 - x0))}" height="{num(abs(y1 - y0))}"'
                    f' fill="{fill}"{stroke}{extra}/>'
                )
            elif shape.get("type", "line") == "line":
                self.out.append(
                    f'<path d="M{num(x0)},{num(y0)}L{num(x1)},{num(y1)}"'
                    f' fill="none"{stroke}{extra}/>'
                )

    def _traces(self) -> None:
        left, top, right, bottom = self.box
        clip = f"{self.id}-plot"
        self.out.append(
            f'<defs><clipPath id="{clip}"><rect x="{num(left)}" y="{num(top)}"'
            f' width="{num(right - left)}" height="{num(bottom - top)}"/></clipPath></defs>'
        )
        self.out.extend(self._trace(trace, i) for i, trace in enumerate(self.traces))

    def _points(self, trace: dict[str, Any]) -> list[tuple[float, float] | None]:
        ax, bx = self.x.scale()
        ay, by = self.y.scale()
        to_x, to_y = self.x.to_l, self.y.to_l
        out: list[tuple[float, float] | None] = []
        for xv, yv in zip(trace.get("x") or [], trace.get("y") or [], strict=False):
            lx, ly = to_x(xv), to_y(yv)
            out.append(None if lx is None or ly is None else (ax * lx + bx, ay * ly + by))
        return out

    def _trace(self, trace: dict[str, Any], index: int) -> str:
        mode = str(trace.get("mode", "lines+markers"))
        points = self._points(trace)
        parts: list[str] = []
        # Lines and error bars are cut at the plot's edge; markers and text too, unless the
        # trace says otherwise (cliponaxis).
        clip = f' clip-path="url(#{self.id}-plot)"'
        if "lines" in mode:
            parts.append(self._line(trace, points, clip))
        if trace.get("error_x") and (trace["error_x"].get("visible", True)):
            parts.append(self._errors(trace, points, clip))
        clip = "" if trace.get("cliponaxis") is False else clip
        if "markers" in mode:
            parts.append(self._markers(trace, points, index, clip))
        if "text" in mode:
            parts.append(self._texts(trace, points, clip))
        opacity = trace.get("opacity")
        extra = f' opacity="{attr(str(opacity))}"' if opacity not in (None, 1) else ""
        return f'<g class="trace"{extra}>{"".join(parts)}</g>'

    def _line(
        self, trace: dict[str, Any], points: Sequence[tuple[float, float] | None], clip: str
    ) -> str:
        line = trace.get("line") or {}
        width = float(line.get("width", 2))
        step = line.get("shape") == "hv"
        d: list[str] = []
        pen_down = False
        for pt in points:
            if pt is None:
                pen_down = False
                continue
            x, y = num(pt[0]), num(pt[1])
            if not pen_down:
                d.append(f"M{x},{y}")
                pen_down = True
            elif step:
                d.append(f"H{x}V{y}")
            else:
                d.append(f"L{x},{y}")
        if not d:
            return ""
        stroke = stroke_attrs(str(line.get("color", "#1f77b4")), width, line.get("dash"))
        return f'<path class="line" d="{"".join(d)}" fill="none"{stroke}{clip}/>'

    def _errors(
        self, trace: dict[str, Any], points: Sequence[tuple[float, float] | None], clip: str
    ) -> str:
        spec = trace["error_x"]
        errors = spec.get("array") or []
        a, _ = self.x.scale()
        cap = float(spec.get("width", 4))
        d = ""
        for pt, err in zip(points, errors, strict=False):
            if pt is None or not err:
                continue
            x, y = pt
            lo, hi = x - abs(a) * float(err), x + abs(a) * float(err)
            d += f"M{num(lo)},{num(y)}H{num(hi)}"
            d += f"M{num(lo)},{num(y - cap)}V{num(y + cap)}M{num(hi)},{num(y - cap)}V{num(y + cap)}"
        if not d:
            return ""
        colour = attr(str(spec.get("color", "#444")))
        width = float(spec.get("thickness", 2))
        return f'<path d="{d}" fill="none"{stroke_attrs(colour, width)}{clip}/>'

    def _markers(
        self,
        trace: dict[str, Any],
        points: Sequence[tuple[float, float] | None],
        index: int,
        clip: str = "",
    ) -> str:
        marker = trace.get("marker") or {}
        symbol = str(marker.get("symbol", "circle"))
        size = marker.get("size", 6)
        size = float(size if not isinstance(size, list) else size[0])
        # Every marker of a trace is one subpath of a single path, "M x,y" at its centre, then
        # the symbol's outline relative to it: a browser lays out and paints one element per
        # trace (per colour) in a hundredth of the time thousands of <use> or <circle> take.
        outline = relative(symbol_path(symbol, size / 2))
        colour = marker.get("color", "#1f77b4")
        per_point: list[str] | None = None
        if isinstance(colour, list):
            scale = scale_of(marker)
            low, high = colour_range(marker)
            span = (high - low) or 1.0
            # Shades a step of 1/64 apart (too close to tell): squares of one shade share a path.
            per_point = [
                colour_at(scale, round((float(c) - low) / span * 64) / 64)
                if isinstance(c, int | float)
                else "#444"
                for c in colour
            ]
            colour = "#444"
        line = marker.get("line") or {}
        open_ = is_open(symbol)
        if open_:
            paint = 'fill="none"' + stroke_attrs(str(colour), float(line.get("width", 1)))
        else:
            paint = f'fill="{attr(str(colour))}"'
            if float(line.get("width", 0)) > 0:
                paint += stroke_attrs(str(line.get("color", "#444")), float(line["width"]))
        opacity = marker.get("opacity")
        if opacity is not None and not isinstance(opacity, list):
            paint += f' opacity="{attr(str(opacity))}"'
        ids = trace.get("customdata") or []
        with_ids = isinstance(ids, list) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        )
        # Per shade (one shade without a colour scale): its subpaths and their trials' ids.
        shades: dict[str, tuple[list[str], list[str]]] = {}
        for k, pt in enumerate(points):
            if pt is None:
                continue
            shade = per_point[k] if per_point is not None and k < len(per_point) else ""
            subpaths, trials = shades.setdefault(shade, ([], []))
            subpaths.append(f"M{num(pt[0])},{num(pt[1])}{outline}")
            if with_ids and k < len(ids):
                trials.append(str(ids[k]))
        paths = []
        for shade, (subpaths, trials) in shades.items():
            fill = f' fill="{shade}"' if shade else ""
            # The trials in the order of the subpaths: a click before Plotly has drawn finds
            # the nearest marker's trial (study.js).
            said = f' data-ids="{" ".join(trials)}"' if trials else ""
            paths.append(f'<path d="{"".join(subpaths)}"{fill}{said}/>')
        return f'<g class="points" {paint}{clip}>{"".join(paths)}</g>'

    def _texts(
        self, trace: dict[str, Any], points: Sequence[tuple[float, float] | None], clip: str
    ) -> str:
        texts = trace.get("text")
        if not isinstance(texts, list):
            texts = [texts] * len(points)
        font = trace.get("textfont") or {}
        fs = float(font.get("size", self.font_size))
        position = str(trace.get("textposition", "middle center"))
        mode = str(trace.get("mode", ""))
        r = 0.0
        if "markers" in mode:
            size = (trace.get("marker") or {}).get("size", 6)
            r = (size if not isinstance(size, list) else size[0]) / 2
        pad = r / 0.8 + 1 if r else 0.0
        dx = {"left": -pad, "right": pad}.get(position.split()[-1], 0.0)
        anchor = {"left": "end", "right": "start"}.get(position.split()[-1], "middle")
        vertical = position.split()[0]
        dy = {"top": -pad - fs * 0.25, "bottom": pad + fs * 0.8}.get(vertical, fs * 0.25)
        body = []
        for pt, text in zip(points, texts, strict=False):
            if pt is None or text is None:
                continue
            body.append(f'<text x="{num(pt[0] + dx)}" y="{num(pt[1] + dy)}">{text_of(text)}</text>')
        colour = font.get("color")
        fill = f' fill="{attr(str(colour))}"' if colour else ""
        head = f'<g class="text" font-size="{num(fs)}" text-anchor="{anchor}"{fill}{clip}>'
        return head + "".join(body) + "</g>"

    # -- legend, buttons, colour bar --------------------------------------------------------------

    def _legend_items(self) -> list[tuple[int, dict[str, Any]]]:
        items = [
            (i, t)
            for i, t in enumerate(self.all_traces)
            if t.get("visible", True) is not False and t.get("showlegend", True) is not False
        ]
        shown = self.layout.get("showlegend")
        if shown is None:
            shown = len(items) > 1
        if not shown:
            return []
        return sorted(items, key=lambda it: (float(it[1].get("legendrank", 1000)), it[0]))

    def _legend_rows(self, room: float) -> list[list[tuple[float, int, dict[str, Any]]]]:
        """The legend's items laid out in rows (``x`` from the legend's left, the trace's
        index, the trace): side by side, wrapping at ``room``; with legend groups (curves),
        each group is a column of its items, as Plotly lays a grouped horizontal legend."""
        fs = float(
            ((self.layout.get("legend") or {}).get("font") or {}).get("size", self.font_size)
        )
        columns: dict[object, list[tuple[int, dict[str, Any]]]] = {}
        grouped = any(t.get("legendgroup") for _, t in self.legend)
        for i, t in self.legend:
            columns.setdefault(t.get("legendgroup") if grouped else i, []).append((i, t))
        rows: list[list[tuple[float, int, dict[str, Any]]]] = []
        x, first = 0.0, 0
        for column in columns.values():
            width = max(45 + text_width(str(t.get("name", f"trace {i}")), fs) for i, t in column)
            if rows and x + width > room:
                first, x = len(rows), 0.0
            for k, (i, t) in enumerate(column):
                while len(rows) <= first + k:
                    rows.append([])
                rows[first + k].append((x, i, t))
            x += width
        return rows

    def _legend_height(self, rows: Sequence[object]) -> float:
        return 10 + LEGEND_ROW * len(rows)

    def _draw_legend(self, rows: list[list[tuple[float, int, dict[str, Any]]]]) -> None:
        if not rows:
            return
        left, top, _, bottom = self.box
        fs = float(
            ((self.layout.get("legend") or {}).get("font") or {}).get("size", self.font_size)
        )
        base = top - 0.02 * (bottom - top) - self._legend_height(rows) + 5
        parts = ['<g class="legend">']
        for r, row in enumerate(rows):
            cy = base + r * LEGEND_ROW + LEGEND_ROW / 2
            for x0, i, t in row:
                x = left + x0
                faded = ' opacity="0.5"' if t.get("visible", True) == "legendonly" else ""
                parts.append(f"<g{faded}>{self._sample(t, x, cy, i)}")
                name = text_of(t.get("name", f"trace {i}"))
                parts.append(
                    f'<text x="{num(x + 40)}" y="{num(cy)}" dy=".35em" font-size="{num(fs)}">'
                    f"{name}</text></g>"
                )
        parts.append("</g>")
        self.out.append("".join(parts))

    def _sample(self, t: dict[str, Any], x: float, cy: float, index: int) -> str:
        mode = str(t.get("mode", "lines+markers"))
        out = ""
        if "lines" in mode:
            line = t.get("line") or {}
            width = min(float(line.get("width", 2)), 5.0)
            out += (
                f'<path d="M{num(x + 5)},{num(cy)}H{num(x + 35)}"'
                f"{stroke_attrs(str(line.get('color', '#1f77b4')), width, line.get('dash'))}/>"
            )
        if "markers" in mode:
            marker = dict(t.get("marker") or {})
            size = marker.get("size", 6)
            marker["size"] = min(16.0, float(size if not isinstance(size, list) else size[0]))
            if isinstance(marker.get("color"), list):
                marker["color"] = colour_at(scale_of(marker), 0.5)
            fake = {"marker": marker, "x": [0], "y": [0]}
            body = self._markers(fake, [(x + 20, cy)], 1000 + index)
            out += body.replace(
                f'id="{self.id}-m{1000 + index}"', f'id="{self.id}-l{index}"'
            ).replace(f'href="#{self.id}-m{1000 + index}"', f'href="#{self.id}-l{index}"')
        return out

    def _menu_buttons(self) -> list[tuple[str, bool, float]]:
        out = []
        for menu in self.layout.get("updatemenus") or []:
            fs = float((menu.get("font") or {}).get("size", self.font_size))
            active = menu.get("active", 0)
            for k, button in enumerate(menu.get("buttons") or []):
                out.append((str(button.get("label", "")), k == active, fs))
        return out

    def _menu_height(self) -> float:
        return 3 * max((fs for _, _, fs in self.menus), default=0.0)  # as Plotly sizes one

    def _draw_menus(self) -> None:
        if not self.menus:
            return
        _, top, right, bottom = self.box
        widths = [text_width(label, fs) + 24 for label, _, fs in self.menus]
        height = self._menu_height()
        x = right + 1 - sum(widths) - 2 * (len(widths) - 1)
        y = top - 0.02 * (bottom - top) - height
        parts = ['<g class="menu">']
        for (label, active, fs), w in zip(self.menus, widths, strict=True):
            fill = "#F4FAFF" if active else "#ffffff"
            parts.append(
                f'<rect x="{num(x)}" y="{num(y)}" width="{num(w)}" height="{num(height)}" rx="2"'
                f' fill="{fill}" stroke="#BEC8D9"/>'
                f'<text x="{num(x + 12)}" y="{num(y + height * 0.59)}" font-size="{num(fs)}">'
                f"{text_of(label)}</text>"
            )
            x += w + 2
        parts.append("</g>")
        self.out.append("".join(parts))

    def _bar_ticks(self, marker: dict[str, Any], length: float) -> list[tuple[float, str]]:
        low, high = colour_range(marker)
        if high <= low:
            return [(low, tick_number(low, 0.0, {}))]
        values = linear_ticks(low, high, max(4.0, min(9.0, length / 40.0)) + 1)
        step = values[1] - values[0] if len(values) > 1 else high - low
        return [(v, tick_number(v, step, {"separatethousands": True})) for v in values]

    def _bar_width(self) -> float:
        assert self.bar is not None
        thickness = float((self.bar.get("colorbar") or {}).get("thickness", 30))
        ticks = self._bar_ticks(self.bar, self.h)
        label_w = max((text_width(t, self.font_size) for _, t in ticks), default=0.0)
        title = str(((self.bar.get("colorbar") or {}).get("title") or {}).get("text") or "")
        title_w = text_width(title, round(self.font_size * 1.2))
        return 10 + max(thickness + 4 + label_w, title_w) + 10 + 12

    def _draw_bar(self, marker: dict[str, Any]) -> None:
        left, top, right, bottom = self.box
        bar = marker.get("colorbar") or {}
        thickness = float(bar.get("thickness", 30))
        title = str((bar.get("title") or {}).get("text") or "")
        x = right + 0.02 * (right - left) + 10
        fs = self.font_size
        ts = round(fs * 1.2)
        # Plotly's bar: 10 px in from the plot's top and bottom, its title on top.
        bar_top = top + 10 + (ts * 1.5 if title else 0)
        length = bottom - 10 - bar_top
        scale = scale_of(marker)
        grad = f"{self.id}-scale"
        stops = "".join(
            f'<stop offset="{num(100 * k / (len(scale) - 1))}%" stop-color="{c}"/>'
            for k, c in enumerate(reversed(scale))
        )
        parts = [
            f'<defs><linearGradient id="{grad}" x1="0" y1="0" x2="0" y2="1">{stops}'
            "</linearGradient></defs>",
            f'<g class="colorbar"><rect x="{num(x)}" y="{num(bar_top)}" width="{num(thickness)}"'
            f' height="{num(length)}" fill="url(#{grad})" stroke="#444"/>',
        ]
        if title:
            parts.append(
                f'<text x="{num(x)}" y="{num(top + 10 + ts * 0.97)}" font-size="{ts}">'
                f"{text_of(title)}</text>"
            )
        low, high = colour_range(marker)
        span = (high - low) or 1.0
        for v, text in self._bar_ticks(marker, length):
            y = bar_top + length - (v - low) / span * length
            parts.append(
                f'<text x="{num(x + thickness + 3.4)}" y="{num(y)}" dy=".35em">'
                f"{text_of(text)}</text>"
            )
        parts.append("</g>")
        self.out.append("".join(parts))
