"""Small charts drawn on the server as inline SVG: no script, no stylesheet or font to fetch.

Each chart labels itself, so there is no legend to look up: its title and current value along
the top, the time span, the peak (the top of its scale, whose bottom is 0) and "now" along the
bottom, "no traffic" across an empty one. The SVG's <title> (a tooltip, and what a screen reader
says) sums the whole span up. Text is drawn in the page's own colour (currentColor), so the
admin's dark theme reads it too. Every text and attribute is escaped.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

NO_TRAFFIC = "no traffic"
FONT_FAMILY = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"  # local fonts only


@dataclass(frozen=True)
class ChartSize:
    width: int
    height: int
    font: int  # px; the footer is a little smaller
    line: float  # stroke width


SMALL = ChartSize(width=140, height=50, font=9, line=1.5)
LARGE = ChartSize(width=300, height=100, font=12, line=2)


@dataclass(frozen=True)
class Chart:
    title: str
    values: Sequence[float | None]  # oldest first, evenly spaced; None: nothing that step
    fmt: Callable[[float], str]  # a value as its label ("230 ms")
    color: str
    summary: str = ""  # the whole span in words, for the <title>
    span: str = "60 min"


def chart_svg(chart: Chart, size: ChartSize = SMALL) -> SafeString:
    """One chart as an <svg> element; empty (every value None) draws a flat line."""
    w, h, font = size.width, size.height, size.font
    small = max(font - 1, 7)
    top, bottom = font + 5, h - small - 5
    present = [v for v in chart.values if v is not None]
    peak = max(present, default=0.0)
    last = chart.values[-1] if chart.values else None
    now_text = chart.fmt(last) if last is not None else "–"
    label = f"{chart.title}, last {chart.span}: " + (
        f"now {now_text}, peak {chart.fmt(peak)}" if present else NO_TRAFFIC
    )
    if chart.summary:
        label += f"; {chart.summary}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{_e(label)}" class="gateway-chart" '
        f'font-family="{_e(FONT_FAMILY)}" font-size="{font}" fill="currentColor">',
        f"<title>{_e(label)}</title>",
        _text(1, font, chart.title, weight="bold"),
        _text(w - 1, font, f"now {now_text}", anchor="end", color=chart.color, weight="bold"),
        _hline(top, w, dashed=True),
        _hline(bottom, w),
        _text(1, h - 2, f"−{chart.span}", size=small, opacity=0.7),
        _text(w - 1, h - 2, "now", size=small, anchor="end", opacity=0.7),
    ]
    if present:
        parts.append(_text(w / 2, h - 2, f"peak {chart.fmt(peak)}", size=small, anchor="middle"))
        parts += _lines(chart, size, top, bottom, peak)
    else:
        parts.append(
            f'<line x1="0" y1="{bottom}" x2="{w}" y2="{bottom}" stroke="{_e(chart.color)}" '
            f'stroke-width="{size.line}" stroke-opacity="0.5"/>'
        )
        parts.append(_text(w / 2, (top + bottom) / 2 + font / 3, NO_TRAFFIC, anchor="middle",
                           opacity=0.7))  # fmt: skip
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text and attribute above is escaped


def charts_row(svgs: Iterable[SafeString], *, stacked: bool = False) -> SafeString:
    """Charts side by side, wrapping on narrow screens; `stacked`: one above the other."""
    inner = "".join(svgs)  # each already escaped
    direction = "column" if stacked else "row"
    return mark_safe(
        f'<div class="gateway-charts" style="display:flex;flex-flow:{direction} wrap;'
        f'gap:4px 12px">{inner}</div>'
    )


def _lines(chart: Chart, size: ChartSize, top: float, bottom: float, peak: float) -> list[str]:
    """Each run of consecutive values as a line over a faint area; a lone value as a dot; a
    dot on the latest value."""
    values = chart.values
    step = (size.width - 2) / max(len(values) - 1, 1)
    scale = (bottom - top) / peak if peak > 0 else 0.0
    points = [
        None if v is None else (1 + i * step, bottom - v * scale) for i, v in enumerate(values)
    ]
    color = _e(chart.color)
    parts: list[str] = []
    run: list[tuple[float, float]] = []
    for point in [*points, None]:
        if point is not None:
            run.append(point)
            continue
        if len(run) == 1:
            parts.append(_dot(run[0], size.line, color))
        elif run:
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            area = f"{run[0][0]:.1f},{bottom} {line} {run[-1][0]:.1f},{bottom}"
            parts.append(f'<polygon points="{area}" fill="{color}" fill-opacity="0.15"/>')
            parts.append(
                f'<polyline points="{line}" fill="none" stroke="{color}" '
                f'stroke-width="{size.line}" stroke-linejoin="round"/>'
            )
        run = []
    if points and points[-1] is not None:
        parts.append(_dot(points[-1], size.line + 0.5, color))
    return parts


def _dot(point: tuple[float, float], radius: float, color: str) -> str:
    return f'<circle cx="{point[0]:.1f}" cy="{point[1]:.1f}" r="{radius}" fill="{color}"/>'


def _hline(y: float, width: int, *, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="2 3"' if dashed else ""
    return (
        f'<line x1="0" y1="{y}" x2="{width}" y2="{y}" stroke="currentColor" '
        f'stroke-opacity="0.25"{dash}/>'
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: int | None = None,
    anchor: str = "start",
    color: str | None = None,
    weight: str | None = None,
    opacity: float | None = None,
) -> str:
    attrs = f'x="{x:g}" y="{y:g}" text-anchor="{anchor}"'
    if size is not None:
        attrs += f' font-size="{size}"'
    if color is not None:
        attrs += f' fill="{_e(color)}"'
    if weight is not None:
        attrs += f' font-weight="{weight}"'
    if opacity is not None:
        attrs += f' fill-opacity="{opacity}"'
    return f"<text {attrs}>{_e(text)}</text>"


def _e(text: str) -> str:
    return escape(text, quote=True)


# -- value labels --------------------------------------------------------------------------


def count_text(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def ms_text(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f} s"
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    return f"{value:.0f} ms"


def ratio_text(value: float) -> str:
    if value == 0:
        return "0%"
    return "<1%" if value < 0.01 else f"{value:.0%}"
