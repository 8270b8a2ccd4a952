"""The report's SVG charts: well-formed, the expected marks, every text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from app.reports import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def marks(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(SVG + tag) if cls in (e.get("class") or "").split()]


def test_interval_chart_draws_the_band_the_estimate_and_the_threshold() -> None:
    root = parse(charts.interval_chart(0.9, 0.72, 1.0, 0.6, "passed", "chat"))
    (band,) = marks(root, "rect", "ci")
    (dot,) = marks(root, "circle", "estimate")
    (line,) = marks(root, "line", "threshold")
    left, width = float(band.get("x")), float(band.get("width"))
    assert left < float(dot.get("cx")) <= left + width
    assert float(line.get("x1")) < left  # threshold left of the whole band: passed
    assert root.get("role") == "img" and "threshold 0.60" in root.get("aria-label")


def test_interval_chart_without_bounds_still_draws_the_axis() -> None:
    root = parse(charts.interval_chart(None, None, None, 0.5, "skipped", "x"))
    assert not marks(root, "rect", "ci") and marks(root, "line", "threshold")


def test_distribution_chart_has_bars_quantile_bands_and_the_slo() -> None:
    values = [10.0 + i % 7 for i in range(80)] + [40.0, 55.0]
    q = [
        charts.QuantileMark("p50", 13.0, 12.0, 14.0),
        charts.QuantileMark("p95", 16.0, 15.0, 40.0, slo=2000.0, outcome="passed"),
    ]
    root = parse(charts.distribution_chart(values, q, "latency"))
    bars = marks(root, "rect", "bar")
    assert bars and sum(int(b.find(SVG + "title").text.split()[0]) for b in bars) == 82
    assert len(marks(root, "rect", "q-ci")) == 2 and len(marks(root, "line", "quantile")) == 2
    (slo,) = marks(root, "line", "slo")
    assert float(slo.get("x1")) > max(float(b.get("x")) for b in bars)  # 2 s lies right of all
    assert "log scale" in root.get("aria-label")


def test_distribution_chart_with_nothing_answered() -> None:
    root = parse(charts.distribution_chart([], [], "ttft"))
    assert not marks(root, "rect", "bar")
    assert "no answered requests" in ET.tostring(root, encoding="unicode")


def test_throughput_chart_has_a_bar_per_concurrency_and_the_needed_rate() -> None:
    root = parse(charts.throughput_chart([(8, 445.0), (1, 63.3)], 2.0, "load"))
    bars = marks(root, "rect", "bar")
    assert len(bars) == 2 and float(bars[1].get("height")) > float(bars[0].get("height"))
    assert len(marks(root, "rect", "ideal")) == 1 and marks(root, "line", "threshold")


def test_text_is_escaped_everywhere() -> None:
    evil = '<script>alert(1)</script>"'
    for svg in (
        charts.interval_chart(0.5, 0.4, 0.6, 0.5, evil, evil),
        charts.distribution_chart([1.0, 2.0], [charts.QuantileMark(evil, 1.5, 1, 2)], evil),
        charts.throughput_chart([(1, 1.0)], None, evil),
        charts.badge(evil, evil, evil, "/x?a=1&b=<2>"),
    ):
        root = parse(svg)  # well-formed: the payload did not open an element
        assert not list(root.iter(SVG + "script")) and "<script>" not in str(svg)


def test_badge_is_a_standalone_svg_with_label_and_message() -> None:
    root = parse(charts.badge("modelcert smoke", "certified · until 2027-01-05", "certified"))
    texts = [t.text for t in root.iter(SVG + "text")]
    assert texts == ["modelcert smoke", "certified · until 2027-01-05"]
    assert root.get("width") and root.get("height") == "20"
    fills = {r.get("fill") for r in root.iter(SVG + "rect")}
    assert charts.BADGE_COLOURS["certified"] in fills
