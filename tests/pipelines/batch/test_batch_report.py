"""HTML reports: keyword highlighting, stage bands, and the pages rendered in headless Chromium."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers_batch import load_call

from pipelines.batch.report import highlight, stage_spans

CHROMIUM = "/usr/bin/chromium"


def test_highlight_marks_hits_and_escapes_text():
    text = "<b>我要投诉</b>，你们这什么破服务"
    hits = [{"term": "我要投诉", "start": 3, "end": 7, "category": "complaint_intent"},
            {"term": "你们这破…", "text": "你们这什么破", "category": "dissatisfaction"}]  # no offsets: found by text
    out = highlight(text, hits)
    assert out.startswith("&lt;b&gt;<mark") and "<b>" not in out
    assert out.count("<mark") == 2 and ">我要投诉</mark>" in out and ">你们这什么破</mark>" in out


def test_stage_spans_cover_the_call(cli_batch):
    payload = load_call(cli_batch, "call_escalating_8k")
    spans = stage_spans(payload)
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(payload["duration_s"])
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert max(level for _, _, level in spans) == payload["summary"]["peak_stage"]


def test_pages_render_plots_in_headless_chromium(cli_batch, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not found (Debian package chromium); the HTML is checked statically elsewhere")
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright not installed (dev extra)")
    shots = [Path(d) for d in (tmp_path, os.environ.get("NUQI_SCREENSHOT_DIR")) if d]
    pages = {"call_escalating_8k": cli_batch.out / "calls" / "call_escalating_8k.html",
             "index": cli_batch.out / "index.html"}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            for name, path in pages.items():
                page.goto(path.as_uri(), wait_until="load")
                imgs = page.locator("img.plot, svg")
                assert imgs.count() >= 1, f"{name}: no plot element"
                for i in range(imgs.count()):
                    el = imgs.nth(i)
                    assert el.is_visible(), f"{name}: plot {i} not visible"
                    box = el.bounding_box()
                    assert box and box["width"] > 300 and box["height"] > 150, (name, box)
                    assert el.evaluate("e => e.tagName !== 'IMG' || (e.complete && e.naturalWidth > 0)"), \
                        f"{name}: image {i} did not decode"
                for d in shots:
                    d.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(d / f"batch_{name}.png"), full_page=True)
            # offline pages: nothing but the page files themselves is requested
            assert all(u.startswith(("file://", "data:")) for u in requests), requests
            # the call page links back to the overview, the overview to the call pages
            page.goto(pages["index"].as_uri())
            assert page.locator('a[href="calls/call_escalating_8k.html"]').count() == 1
            assert "投诉" in page.locator("table#calls").inner_text()
        finally:
            browser.close()
    assert (tmp_path / "batch_index.png").stat().st_size > 10_000


def test_call_page_says_why_alerts_fired_and_names_type_and_stage(models):
    """Issue 17 item 19: the alerts table's "why" column only repeated the stage name; the complaint type
    「升级投诉」 stood next to the stage 「投诉升级」 unexplained."""
    import re

    from pipelines.batch.records import CallJob, ScoreOptions
    from pipelines.batch.report import alert_why
    from pipelines.batch.scorer import Scorer
    from tests.conftest import SAMPLE_AUDIO

    out = Scorer(models, ScoreOptions(asr="off")).score(CallJob(
        path=str(SAMPLE_AUDIO / "call_escalating_8k.wav"), name="esc",
        sidecar=str(SAMPLE_AUDIO / "call_escalating_8k.json")))
    html = out.html_text
    table = html[html.index("<h2>Alerts"):html.index("<h2>Transcript")]
    whys = re.findall(r"<td>([^<]*)</td></tr>", table)
    assert whys and all("依据" in w or "怒气" in w for w in whys), whys
    assert {"潜在不满", "显化抱怨", "投诉", "投诉升级"}.isdisjoint(whys)  # not the bare stage name
    assert "投诉类型" in html and "is not the stage" in html
    assert alert_why({"stage_name": "投诉", "cues": [{"text_zh": "提到“投诉”"}]}) == "投诉：提到“投诉”"
