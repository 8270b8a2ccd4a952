"""The report's charts as SVG written here, server-side: no script, no library.

Why hand-written: the charts are four simple shapes (an interval against a threshold, a
histogram with quantile bands and an SLO line, bars per concurrency, a badge), and an SVG
element placed in the page takes its colours from the page's stylesheet (classes, CSS
variables), so one chart follows `prefers-color-scheme` and print without being drawn
twice, and needs no `style` attribute the Content-Security-Policy would have to allow.
Vega-Altair with vl-convert would bring a JavaScript engine (some 100 MB) into the API
image to draw the same marks with inline styles; pygal's SVG references its tooltip script
from a CDN unless configured away and styles itself inline. Every text that reaches a chart
is escaped here (MarkupSafe), and tests/unit/reports/test_charts.py pins the marks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 360


def _n(value: float) -> str:
    """A coordinate: two decimals, no exponent."""
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def _svg(height: float, body: list[str], label: str, kind: str) -> Markup:
    return Markup(
        f'<svg class="chart {kind}" viewBox="0 0 {WIDTH} {_n(height)}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, cls: str = "label", anchor: str = "middle") -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" class="{cls}" text-anchor="{anchor}">{escape(text)}</text>'
    )


# Pass rate against its threshold ------------------------------------------------------


def interval_chart(
    estimate: float | None,
    lower: float | None,
    upper: float | None,
    threshold: float | None,
    outcome: str,
    name: str,
) -> Markup:
    """The pass rate (dot) with its 95 % interval (band) on a 0-1 axis, and the threshold
    (line): the band wholly right of the line passes, wholly left fails."""
    left, right, axis_y = 12.0, WIDTH - 12.0, 40.0

    def x(value: float) -> float:
        return left + (right - left) * min(max(value, 0.0), 1.0)

    body = [f'<line class="axis" x1="{_n(left)}" y1="{axis_y}" x2="{_n(right)}" y2="{axis_y}"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(
            f'<line class="tick" x1="{_n(x(tick))}" y1="{axis_y}" '
            f'x2="{_n(x(tick))}" y2="{axis_y + 4}"/>'
        )
        body.append(_text(x(tick), axis_y + 15, f"{tick:g}"))
    if lower is not None and upper is not None:
        body.append(
            f'<rect class="ci outcome-{escape(outcome)}" x="{_n(x(lower))}" y="14" '
            f'width="{_n(max(x(upper) - x(lower), 1.5))}" height="16" rx="3"/>'
        )
    if estimate is not None:
        body.append(
            f'<circle class="estimate" cx="{_n(x(estimate))}" cy="22" r="4.5"><title>'
            f"{escape(f'pass rate {estimate:.2f}')}</title></circle>"
        )
    if threshold is not None:
        tx = x(threshold)
        body.append(f'<line class="threshold" x1="{_n(tx)}" y1="4" x2="{_n(tx)}" y2="{axis_y}"/>')
        anchor = "end" if threshold > 0.8 else "start"
        body.append(
            _text(
                tx + (-4 if anchor == "end" else 4), 9, f"threshold {threshold:.2f}", "note", anchor
            )
        )
    parts = [name]
    if estimate is not None:
        parts.append(f"pass rate {estimate:.2f}")
    if lower is not None and upper is not None:
        parts.append(f"95% CI {lower:.2f} to {upper:.2f}")
    if threshold is not None:
        parts.append(f"threshold {threshold:.2f}")
    return _svg(62, body, ", ".join(parts), "interval")


# Distributions (latency, TTFT) ------------------------------------------------------------


@dataclass(frozen=True)
class QuantileMark:
    """A quantile's estimate and 95 % interval, and the SLO it is held to (if any)."""

    label: str  # "p50", "p95"
    estimate: float
    lower: float | None
    upper: float | None
    slo: float | None = None
    outcome: str | None = None


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for step in (1, 2, 5):
            value = step * 10.0**exponent
            if lo <= value <= hi:
                ticks.append(value)
    return ticks


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g} s" if value % 1000 == 0 else f"{value / 1000:.1f} s"
    return f"{value:g} ms" if value >= 1 else f"{value:.2g} ms"


def distribution_chart(
    values: Sequence[float], marks: Sequence[QuantileMark], name: str, bins: int = 24
) -> Markup:
    """A histogram of `values` (ms) on a log axis, each quantile's interval as a band with
    its estimate, and each SLO as a dashed line: a log axis, because latency is skewed and an
    SLO often lies orders of magnitude above the typical value."""
    finite = sorted(v for v in values if v is not None and v > 0 and math.isfinite(v))
    if not finite:
        return _svg(40, [_text(WIDTH / 2, 24, "no answered requests", "note")], name, "dist")
    extent = list(finite) + [m.slo for m in marks if m.slo] + [m.upper for m in marks if m.upper]
    lo, hi = min(extent) / 1.25, max(extent) * 1.25
    if hi / lo < 10:  # widen to at least a decade so the ticks mean something
        centre = math.sqrt(lo * hi)
        lo, hi = centre / math.sqrt(10), centre * math.sqrt(10)
    left, right, top, base = 12.0, WIDTH - 12.0, 22.0, 104.0
    span = math.log10(hi) - math.log10(lo)

    def x(value: float) -> float:
        return left + (right - left) * (math.log10(value) - math.log10(lo)) / span

    edges = [lo * (hi / lo) ** (i / bins) for i in range(bins + 1)]
    counts = [0] * bins
    for value in finite:
        index = min(int((math.log10(value) - math.log10(lo)) / span * bins), bins - 1)
        counts[index] += 1
    tallest = max(counts)
    body: list[str] = []
    for mark in marks:
        if mark.lower is not None and mark.upper is not None:
            body.append(
                f'<rect class="q-ci" x="{_n(x(mark.lower))}" y="{top}" '
                f'width="{_n(max(x(mark.upper) - x(mark.lower), 1.5))}" '
                f'height="{_n(base - top)}"/>'
            )
    for i, count in enumerate(counts):
        if count:
            height = (base - top) * count / tallest
            body.append(
                f'<rect class="bar" x="{_n(x(edges[i]) + 0.5)}" y="{_n(base - height)}" '
                f'width="{_n(max(x(edges[i + 1]) - x(edges[i]) - 1, 0.8))}" '
                f'height="{_n(height)}"><title>{escape(f"{count} between")} '
                f"{escape(_fmt(edges[i]))}–{escape(_fmt(edges[i + 1]))}</title></rect>"
            )
    for row, mark in enumerate(marks):
        mx = x(mark.estimate)
        body.append(
            f'<line class="quantile" x1="{_n(mx)}" y1="{top - 2}" x2="{_n(mx)}" y2="{base}"/>'
        )
        body.append(_text(mx, top - 5 - 9 * (row % 2), mark.label, "qlabel"))
    slos = {mark.slo for mark in marks if mark.slo}
    for slo in sorted(slos):
        sx = x(slo)
        body.append(f'<line class="slo" x1="{_n(sx)}" y1="8" x2="{_n(sx)}" y2="{base}"/>')
        body.append(_text(sx - 3, 16, f"SLO {_fmt(slo)}", "note", "end"))
    body.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{right}" y2="{base}"/>')
    for tick in _log_ticks(lo, hi):
        tx = x(tick)
        body.append(f'<line class="tick" x1="{_n(tx)}" y1="{base}" x2="{_n(tx)}" y2="{base + 4}"/>')
        body.append(_text(tx, base + 15, _fmt(tick)))
    described = "; ".join(
        f"{m.label} {_fmt(m.estimate)}"
        + (f" (95% CI {_fmt(m.lower)} to {_fmt(m.upper)})" if m.lower and m.upper else "")
        + (f", SLO {_fmt(m.slo)}" if m.slo else "")
        for m in marks
    )
    label = f"{name}: {len(finite)} requests, log scale" + (f"; {described}" if described else "")
    return _svg(124, body, label, "dist")


# Throughput per concurrency ---------------------------------------------------------------


def throughput_chart(
    levels: Sequence[tuple[int, float]], min_speedup: float | None, name: str
) -> Markup:
    """Answered requests per second at each concurrency (bars), the ideal (the rate at 1 times
    the concurrency, outlined) and the rate `min_speedup` asks for (line)."""
    if not levels:
        return _svg(40, [_text(WIDTH / 2, 24, "not measured", "note")], name, "throughput")
    levels = sorted(levels)
    base_rate = levels[0][1] if levels[0][0] == 1 else None
    ideal = {c: base_rate * c for c, _ in levels} if base_rate else {}
    needed = base_rate * min_speedup if base_rate and min_speedup else None
    top_value = max([r for _, r in levels] + list(ideal.values()) + ([needed] if needed else []))
    top_value = top_value or 1.0
    left, right, top, base = 12.0, WIDTH - 12.0, 14.0, 100.0
    slot = (right - left) / len(levels)
    body: list[str] = []

    def y(value: float) -> float:
        return base - (base - top) * value / top_value

    for i, (concurrency, rate) in enumerate(levels):
        bx = left + slot * i + slot * 0.2
        width = slot * 0.6
        if concurrency in ideal and concurrency != 1:
            body.append(
                f'<rect class="ideal" x="{_n(bx)}" y="{_n(y(ideal[concurrency]))}" '
                f'width="{_n(width)}" height="{_n(base - y(ideal[concurrency]))}">'
                f"<title>ideal {ideal[concurrency]:.1f}/s</title></rect>"
            )
        body.append(
            f'<rect class="bar" x="{_n(bx)}" y="{_n(y(rate))}" width="{_n(width)}" '
            f'height="{_n(max(base - y(rate), 0.5))}"><title>{rate:.1f} requests/s at '
            f"concurrency {concurrency}</title></rect>"
        )
        body.append(_text(bx + width / 2, y(rate) - 3, f"{rate:.1f}/s", "value"))
        body.append(_text(bx + width / 2, base + 14, f"at {concurrency}"))
    if needed:
        body.append(
            f'<line class="threshold" x1="{left}" y1="{_n(y(needed))}" '
            f'x2="{right}" y2="{_n(y(needed))}"/>'
        )
        body.append(
            _text(right, y(needed) - 3, f"needed {min_speedup:g}× = {needed:.1f}/s", "note", "end")
        )
    body.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{right}" y2="{base}"/>')
    label = f"{name}: " + ", ".join(f"{r:.1f} requests/s at concurrency {c}" for c, r in levels)
    return _svg(120, body, label, "throughput")


# Badge ------------------------------------------------------------------------------------

BADGE_COLOURS = {
    "certified": "#2e7d32",
    "certified_with_warnings": "#9a6700",
    "not_certified": "#c62828",
    "inconclusive": "#6e6e6e",
    "none": "#6e6e6e",
}


def _text_width(text: str) -> float:
    """About Verdana 11 px: shields.io's measure, without its font tables."""
    return sum(
        7.5 if c.isupper() or c in "mwMW@%" else 4.0 if c in "il.:|' " else 6.6 for c in text
    )


def badge(label: str, message: str, state: str, link: str | None = None) -> str:
    """A shields-style badge: a standalone SVG document (its colours are its own: it is shown
    as an image, outside any stylesheet)."""
    lw, mw = _text_width(label) + 12, _text_width(message) + 12
    width = lw + mw
    colour = BADGE_COLOURS.get(state, BADGE_COLOURS["none"])
    title = escape(f"{label}: {message}")
    shapes = (
        f'<rect width="{_n(lw)}" height="20" fill="#555"/>'
        f'<rect x="{_n(lw)}" width="{_n(mw)}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        f'font-size="11"><text x="{_n(lw / 2)}" y="14">{escape(label)}</text>'
        f'<text x="{_n(lw + mw / 2)}" y="14">{escape(message)}</text></g>'
    )
    if link:
        shapes = f'<a href="{escape(link)}" target="_blank">{shapes}</a>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="20" '
        f'role="img" aria-label="{title}"><title>{title}</title>'
        f'<clipPath id="r"><rect width="{_n(width)}" height="20" rx="3"/></clipPath>'
        f'<g clip-path="url(#r)">{shapes}</g></svg>'
    )
