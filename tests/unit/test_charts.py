import xml.etree.ElementTree as ET

import pytest

from console.agent_charts import agent_charts
from console.charts import LARGE, SMALL, Chart, chart_svg, count_text, ms_text, ratio_text
from fleet.series import HourView

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    """The chart as XML (a parse error fails the test), with its texts."""
    return ET.fromstring(svg)


def texts(root: ET.Element) -> list[str]:
    return [text.text or "" for text in root.iter(f"{SVG}text")]


def latency_chart(values) -> Chart:
    return Chart("p95 latency", values, ms_text, "#8a4fb3", summary="p95 over the hour 1.2 s")


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_a_chart_is_valid_svg_labelled_in_place(size):
    values = [None] * 57 + [120.0, 1500.0, 230.0]
    root = parse(chart_svg(latency_chart(values), size))
    assert root.tag == f"{SVG}svg"
    assert root.get("width") == str(size.width) and root.get("height") == str(size.height)
    assert texts(root) == ["p95 latency", "now 230 ms", "−60 min", "now", "peak 1.5 s"]
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text == (
        "p95 latency, last 60 min: now 230 ms, peak 1.5 s; p95 over the hour 1.2 s"
    )
    assert root.get("aria-label") == title.text
    (line,) = root.iter(f"{SVG}polyline")
    assert len(line.get("points", "").split()) == 3
    xs = [float(point.split(",")[0]) for point in line.get("points", "").split()]
    assert xs[-1] == pytest.approx(size.width - 1)  # the latest minute at the right edge


def test_gaps_split_the_line_and_a_lone_value_is_a_dot():
    values = [10.0, 20.0, None, 30.0, None, 5.0, 6.0]
    root = parse(chart_svg(Chart("requests/min", values, count_text, "#2f6fb3")))
    assert len(list(root.iter(f"{SVG}polyline"))) == 2
    assert len(list(root.iter(f"{SVG}circle"))) == 2  # the lone 30, and the latest value


def test_no_data_is_a_flat_line_saying_no_traffic():
    root = parse(chart_svg(latency_chart([None] * 60)))
    assert "no traffic" in texts(root)
    assert "now –" in texts(root)
    assert not any(t.startswith("peak") for t in texts(root))
    assert list(root.iter(f"{SVG}polyline")) == []
    assert root.get("aria-label", "").endswith("no traffic; p95 over the hour 1.2 s")


def test_every_text_is_escaped():
    hostile = '<script>alert("x")</script> & "quotes"'
    chart = Chart(hostile, [0.001, 0.004], ratio_text, '"/><script>', summary=hostile)
    svg = chart_svg(chart)
    assert "<script" not in svg
    root = parse(svg)  # still one well-formed element
    assert texts(root)[0] == hostile
    assert "now <1%" in texts(root)  # the value label "<1%", escaped, read back
    assert hostile in root.get("aria-label", "")
    (line,) = root.iter(f"{SVG}polyline")
    assert line.get("stroke") == '"/><script>'  # an attribute value, not markup


def test_an_agent_without_traffic_gets_three_no_traffic_charts():
    html = agent_charts(None)
    assert html.count("<svg") == 3 and html.count("no traffic") == 3 * 3  # text, title, label
    quiet = HourView.empty(end_minute=100)
    assert agent_charts(quiet) == html


def test_an_agents_charts_say_what_they_show():
    view = HourView.empty(end_minute=100)
    view.requests[-1], view.fallbacks[-1] = 4, 1
    view.latency[-1][5] = 4  # 4 answers in 75-100 ms
    charts = parse(agent_charts(view, LARGE)).findall(f"{SVG}svg")  # the row is XML too
    assert [texts(c)[:2] for c in charts] == [
        ["requests/min", "now 4"],
        ["p95 latency", "now 99 ms"],
        ["fallback ratio", "now 25%"],
    ]
    assert "total 4" in charts[0].get("aria-label", "")
    assert "1 of 4 fallbacks" in charts[2].get("aria-label", "")


@pytest.mark.parametrize(
    ("fmt", "value", "text"),
    [
        (count_text, 7, "7"),
        (count_text, 1234, "1.2k"),
        (ms_text, 87.4, "87 ms"),
        (ms_text, 1250, "1.2 s"),
        (ms_text, 12_500, "12 s"),
        (ratio_text, 0, "0%"),
        (ratio_text, 0.004, "<1%"),
        (ratio_text, 0.25, "25%"),
    ],
)
def test_value_labels(fmt, value, text):
    assert fmt(value) == text
