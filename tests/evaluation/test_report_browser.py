"""report.html in a real browser: Debian's Chromium, headless, driven by playwright (its own browser builds
are not used: ``playwright install`` downloads one). scripts/test.sh installs Chromium on a fresh machine
(apt-get, as root); where it is missing or cannot start, these tests skip and say why.

Checked: no JavaScript error or console error, one card per sample, the default order (worst first),
that sorting, filtering and j/k change what is shown as the data says they should, that a predicted box's
SVG rectangle is the prediction's pixels scaled to the image as displayed, the side-by-side page, and
the load time of 5,000 samples. A screenshot is written to the test's folder (its path printed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from perception_env.evaluation.html_report import failure_tags
from perception_env.evaluation.report import write_views
from tests.evaluation.reports import detection_run
from tests.evaluation.test_html_report import record

CHROMIUM = os.environ.get("PERCEPTION_R1_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# headless as root on a machine without network: no sandbox (root), no GPU, nothing that phones home
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator:
    """A Chromium context with a fresh profile (``--user-data-dir``), or a skip saying why there is none."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: scripts/test.sh installs Debian's package as root "
            "(apt-get install -y chromium); elsewhere install it, or set PERCEPTION_R1_CHROMIUM"
        )
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        pytest.skip(f"playwright is not installed ({error}): pip install 'perception-r1[test]'")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as driver:
        try:
            context = driver.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS, viewport=VIEWPORT
            )
        except Error as error:
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {str(error).splitlines()[0]}")
        yield context
        context.close()


class Page:
    """One report open in a tab, with every console error and uncaught exception it raised."""

    def __init__(self, context, path: Path):
        self.tab = context.new_page()
        self.errors: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.tab.goto(path.resolve().as_uri(), wait_until="load")
        self.tab.wait_for_selector("#status:has-text('showing')")

    def shown(self) -> list[int]:
        """The sample indices of the cards on the page, top to bottom."""
        return self.tab.eval_on_selector_all(".card", "cards => cards.map(c => Number(c.dataset.index))")

    def status(self) -> str:
        return self.tab.text_content("#status")

    def close(self):
        self.tab.close()


def worst_first(records) -> list[int]:
    return [r["index"] for r in sorted(records, key=lambda r: (r["reward"], r["index"]))]


def test_the_report_in_chromium(browser, tmp_path):
    run, records = detection_run(tmp_path, n=24)
    page = Page(browser, tmp_path / "report.html")
    tab = page.tab
    try:
        assert page.errors == []
        assert page.status() == "showing 24 of 24 samples"
        assert page.shown() == worst_first(records)  # every card, worst first
        assert len(set(r["reward"] for r in records)) > 2  # so that the order says something

        tab.select_option("#sort", "reward-desc")
        best_first = [r["index"] for r in sorted(records, key=lambda r: (-r["reward"], r["index"]))]
        assert page.shown() == best_first != worst_first(records)
        tab.select_option("#sort", "index")
        assert page.shown() == list(range(24))

        # filters: the cards the data says, in the order chosen
        wrong_label = [r["index"] for r in records if "wrong label" in failure_tags(r)]
        assert 0 < len(wrong_label) < 24
        tab.select_option("#reason", "wrong label")
        assert page.shown() == wrong_label and page.status() == f"showing {len(wrong_label)} of 24 samples"
        tab.select_option("#reason", "")
        labels = [set(r["target"]["labels"] + r["parsed"]["labels"]) for r in records]
        some = next(c for c in sorted(set().union(*labels)) if 0 < sum(c in ls for ls in labels) < 24)
        tab.select_option("#class", some)
        assert page.shown() == [r["index"] for r, ls in zip(records, labels) if some in ls]
        tab.select_option("#class", "")
        tab.fill("#reward-min", "2.99")
        perfect = [r["index"] for r in records if r["reward"] >= 2.99]
        assert page.shown() == perfect and 0 < len(perfect) < 24
        tab.fill("#reward-min", "")
        assert len(page.shown()) == 24

        # keys: typed in a filter box they are text; Esc leaves it, then j, j is the second card, k the first
        current = "() => document.querySelector('.card.current')?.dataset.index"
        tab.keyboard.press("j")
        assert tab.evaluate(current) is None and tab.input_value("#reward-min") == ""  # j typed no number
        tab.keyboard.press("Escape")
        tab.keyboard.press("j")
        tab.keyboard.press("j")
        assert tab.evaluate(current) == "1"
        tab.keyboard.press("k")
        assert tab.evaluate(current) == "0"

        # a predicted box: its rectangle is the prediction's pixels, scaled with the image on screen
        r = next(r for r in records if r["parsed"]["boxes"])
        card = f"#card-{records.index(r)}"
        tab.locator(card).scroll_into_view_if_needed()
        tab.wait_for_function(f"document.querySelector('{card} img').naturalWidth > 0")
        geometry = tab.eval_on_selector(
            card,
            """card => {
              const img = card.querySelector('img').getBoundingClientRect();
              const rect = card.querySelector('rect.pred');
              const box = rect.getBoundingClientRect();
              const attrs = ['x', 'y', 'width', 'height'].map(a => Number(rect.getAttribute(a)));
              return {img: [img.left, img.top, img.width, img.height], box: [box.left, box.top, box.width,
                      box.height], attrs, colour: rect.getAttribute('stroke')};
            }""",
        )
        x1, y1, x2, y2 = r["parsed"]["boxes"][0]
        assert geometry["attrs"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-6)
        left, top, width, height = geometry["img"]
        w, h = r["image_size"]
        assert width == pytest.approx(448, abs=1) and height == pytest.approx(448 * h / w, abs=1)
        sx, sy = width / w, height / h
        expected = [left + x1 * sx, top + y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy]
        assert geometry["box"] == pytest.approx(expected, abs=0.5)
        matched = bool(r["matching"]) and r["matching"][0]["pred"] == 0 and r["matching"][0].get("tp", True)
        assert geometry["colour"] == ("rgb(40,110,255)" if matched else "rgb(230,40,40)")

        tab.select_option("#sort", "reward-asc")
        tab.evaluate("window.scrollTo(0, 0)")
        screenshot = tmp_path / "report.png"
        tab.screenshot(path=str(screenshot))
        print(f"screenshot of the report: {screenshot}")
        assert screenshot.stat().st_size > 10_000
        assert page.errors == []
    finally:
        page.close()


def test_two_evaluations_side_by_side(browser, tmp_path):
    """Sorted by the change in reward, most lost first; each card shows both answers."""
    from perception_env.evaluation.runner import oracle_answerer

    flawed = detection_run(tmp_path / "flawed", n=12)
    oracle = detection_run(tmp_path / "oracle", n=12, answerer=oracle_answerer)
    import gymnasium as gym

    env = gym.make("PerceptionR1/Detection-v0", **flawed[0]["env_kwargs"])
    write_views(tmp_path, oracle[0], oracle[1], env, compare=flawed, report_name="compare.html")
    page = Page(browser, tmp_path / "compare.html")
    try:
        assert page.errors == [] and page.status() == "showing 12 of 12 samples"
        assert page.tab.locator(".card .pane").count() == 24
        page.tab.select_option("#sort", "delta-asc")
        change = {a["index"]: b["reward"] - a["reward"] for a, b in zip(oracle[1], flawed[1])}
        assert page.shown() == sorted(change, key=lambda i: (change[i], i))
        assert min(change.values()) < 0 and page.shown()[-1] in [i for i, d in change.items() if d == 0]
        page.tab.select_option("#sort", "delta-desc")
        assert page.shown()[0] in [i for i, d in change.items() if d == 0]
        assert page.errors == []
    finally:
        page.close()


def test_a_page_without_images_and_with_hostile_text(browser, tmp_path):
    """Answers that look like markup are shown as text; records without images draw on blank canvases; a
    box with a missing coordinate is left out."""
    answer = "</script><img src=x onerror=alert(1)> \ud800"
    records = [record(index=i, sample_id=f"s{i}", answer=answer, reward=float(i)) for i in range(3)]
    # what no evaluation writes, and still no script error: a NaN coordinate (null), no image size
    records[1]["parsed"] |= {
        "boxes": [[float("nan"), 1.0, 2.0, 3.0], [1.0, 1.0, 5.0, 5.0]],
        "labels": ["a", "b"],
    }
    del records[2]["image_size"]
    run = {"task": "detection", "benchmark": "b", "agent": "a", "metrics": {"n": 3.0}}
    write_views(tmp_path, run, records)
    page = Page(browser, tmp_path / "report.html")
    try:
        assert page.errors == []
        assert page.shown() == [0, 1, 2] and page.tab.locator(".card img").count() == 0
        assert page.tab.locator("#card-1 rect.pred").count() == 1  # the finite box only
        shown = page.tab.text_content("#card-0 pre.answer")
        assert shown.startswith("</script><img src=x onerror=alert(1)> ")
    finally:
        page.close()


@pytest.mark.slow
def test_5000_samples_load_without_freezing(browser, tmp_path):
    """A detection evaluation of 5,000 synthetic samples (COCO val's size): the first card shows and the
    load event fires within seconds, only a batch of cards is built, and scrolling builds more."""
    run, records = detection_run(tmp_path, n=5000, data_kwargs={"size": 5000})
    size_mb = (tmp_path / "report.html").stat().st_size / 1e6
    page = Page(browser, tmp_path / "report.html")
    try:
        timing = page.tab.evaluate(
            """() => ({first: performance.getEntriesByName('first-card')[0].startTime,
                      load: performance.getEntriesByType('navigation')[0].loadEventEnd})"""
        )
        print(
            f"5,000 samples ({size_mb:.1f} MB): first card after {timing['first']:.0f} ms, "
            f"load event after {timing['load']:.0f} ms"
        )
        assert page.errors == [] and page.status() == "showing 5000 of 5000 samples"
        built = page.tab.locator(".card").count()
        assert 0 < built < 200  # a batch, not 5,000 cards
        with_pixels = page.tab.locator(".card img[src]").count()
        assert 0 < with_pixels < built  # images only near the viewport
        assert timing["first"] < 10_000 and timing["load"] < 15_000  # generous: a shared 2-core machine
        page.tab.keyboard.press("End")
        page.tab.wait_for_function(f"document.querySelectorAll('.card').length > {built}")
        page.tab.select_option("#reason", "wrong label")
        assert (
            page.status()
            == f"showing {sum('wrong label' in failure_tags(r) for r in records)} of 5000 samples"
        )
    finally:
        page.close()


def test_a_box_on_a_portrait_image_lands_on_its_pixels(browser, tmp_path):
    """A 120x300 image is drawn 448 px tall; a predicted box [10, 20, 60, 200] covers the same fraction of
    it on screen, and so does a target point (counting draws points)."""
    import numpy as np

    from perception_env.evaluation.html_report import image_data_uri, write_report

    image = np.zeros((300, 120, 3), np.uint8)
    image[20:200, 10:60] = 255  # the box's pixels are white
    r = record(
        image_size=[120, 300],
        parsed={"boxes": [[10.0, 20.0, 60.0, 200.0]], "points": [[35.0, 110.0]], "labels": ["dog"]},
        target={"boxes": [[10.0, 20.0, 60.0, 200.0]], "points": [[35.0, 110.0]], "labels": ["dog"]},
        matching=[{"pred": 0, "target": 0, "tp": True}],
    )
    run = {"task": "counting", "benchmark": "b", "agent": "a", "metrics": {"n": 1.0}}
    write_report(tmp_path / "report.html", run, [r], [image_data_uri(image)])
    page = Page(browser, tmp_path / "report.html")
    try:
        page.tab.wait_for_function("document.querySelector('#card-0 img').naturalWidth > 0")
        geometry = page.tab.eval_on_selector(
            "#card-0",
            """card => {
              const rect = (el) => { const b = el.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; };
              return {img: rect(card.querySelector('img')), box: rect(card.querySelector('rect.pred')),
                      point: rect(card.querySelector('circle.target-point'))};
            }""",
        )
        left, top, width, height = geometry["img"]
        assert height == pytest.approx(448, abs=0.5) and width == pytest.approx(448 * 120 / 300, abs=0.5)
        s = height / 300
        assert geometry["box"] == pytest.approx([left + 10 * s, top + 20 * s, 50 * s, 180 * s], abs=0.5)
        x, y, w, h = geometry["point"]  # a circle centred on the point
        assert (x + w / 2, y + h / 2) == pytest.approx((left + 35 * s, top + 110 * s), abs=0.5)
        assert page.errors == []
    finally:
        page.close()
