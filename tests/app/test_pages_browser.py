"""The agent widget (/widget) and supervisor board (/board) in a real headless Chromium.

The real service (real models, real store) runs under uvicorn on a loopback port; the sample
escalating call is posted chunk by chunk (1 s stereo WAV chunks + its transcript turns) while
the pages are open, exactly as a telephony connector would.  Screenshots are written to
``$TMPDIR/nuqi-pages/``.  Needs Debian's /usr/bin/chromium (never downloads a browser).
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.settings import ServiceSettings
from tests.app.live_server import live_server
from tests.conftest import SAMPLE_AUDIO, read_wav, wav_bytes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
STAGES = ["平静", "潜在不满", "即将转化为抱怨", "显化抱怨", "潜在投诉", "投诉", "投诉升级"]
SHOTS = Path(tempfile.gettempdir()) / "nuqi-pages"
CALL_ID, AGENT = "pw-escalating", "a1"
EVIL_AGENT = "<b>a2</b><img src=x onerror=alert(1)>"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian chromium not installed at /usr/bin/chromium (apt-get install chromium)")


# ------------------------------------------------------------------------------------------ fixtures
@contextmanager
def _serve(models, state_dir: Path, **overrides):
    """The real service (create_app with the real models) under uvicorn on a free loopback port."""
    from app.main import create_app

    # always the embedded SQLite store: the pages do not depend on the backend, and a module-scoped
    # server must not share a Redis database that the Redis pass flushes before every test
    settings = ServiceSettings(state_dir=state_dir, store="sqlite", **overrides)
    with live_server(create_app(settings, models=models)) as base:
        yield base


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    with _serve(models, tmp_path_factory.mktemp("pages") / "state") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class CallFeeder:
    """Posts a stereo sample call chunk by chunk (1 s WAV) and each transcript turn once the audio passed
    its end, in a background thread, as fast as the service answers."""

    def __init__(self, base: str, call_id: str, agent_id: str, name: str = "call_escalating_8k",
                 max_chunks: int | None = None, api_key: str | None = None) -> None:
        self.base, self.call_id, self.agent_id = base, call_id, agent_id
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.x, self.sr = read_wav(SAMPLE_AUDIO / f"{name}.wav")
        self.turns = sorted(json.loads((SAMPLE_AUDIO / f"{name}.json").read_text())["turns"], key=lambda t: t["end"])
        self.max_chunks = max_chunks
        self.errors: list[str] = []
        self.posted = 0
        self.seconds: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "CallFeeder":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"feed-{self.call_id}", daemon=True)
            self._thread.start()
        return self

    def join(self, timeout: float = 120) -> "CallFeeder":
        self.start()
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"feeding {self.call_id} took over {timeout} s"
        assert not self.errors, self.errors
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        pending = list(self.turns)
        doing = "connecting"  # the request in flight, named in the error if it fails (a stall under load)
        try:
            with httpx.Client(base_url=self.base, timeout=60, headers=self.headers) as c:
                for seq, i in enumerate(range(0, len(self.x), self.sr)):
                    if self.max_chunks is not None and seq >= self.max_chunks:
                        break
                    doing = f"audio seq {seq}"
                    r = c.post(f"/v1/calls/{self.call_id}/audio", params={"seq": seq, "agent_id": self.agent_id},
                               content=wav_bytes(self.x[i:i + self.sr], self.sr, 2),
                               headers={"Content-Type": "audio/wav"})
                    if r.status_code != 200:
                        self.errors.append(f"audio seq {seq}: {r.status_code} {r.text[:300]}")
                        return
                    self.posted += 1
                    t_audio = (i + self.sr) / self.sr
                    while pending and pending[0]["end"] <= t_audio:
                        turn = pending.pop(0)
                        doing = f"transcript turn ending at {turn['end']} s"
                        r = c.post(f"/v1/calls/{self.call_id}/transcript",
                                   json={**{k: turn[k] for k in ("role", "text", "start", "end")}, "final": True})
                        if r.status_code != 200:
                            self.errors.append(f"transcript {turn['text']}: {r.status_code} {r.text[:300]}")
                            return
        except Exception as exc:  # noqa: BLE001 - reported by join()
            self.errors.append(f"{type(exc).__name__}: {exc} ({doing}, {time.monotonic() - t0:.1f} s into the feed)")
        finally:
            self.seconds = time.monotonic() - t0


@pytest.fixture(scope="module")
def feeder(server) -> CallFeeder:
    return CallFeeder(server, CALL_ID, AGENT)


def _api(base: str, path: str, key: str | None = None, **params) -> dict:
    r = httpx.get(base + path, params=params, timeout=30, headers={"X-API-Key": key} if key else {})
    assert r.status_code == 200, r.text
    return r.json()


def _track_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    return errors


def _check_screenshot(path: Path, size: tuple[int, int], ink: str) -> None:
    """A real rendering: the right size, many colours (text, gauge, badges), and the stage colour painted."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    assert img.size == size
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 150, f"{path} looks blank ({len(colours or [])} colours)"
    rgb = tuple(int(v) for v in ink[ink.index("(") + 1:ink.index(")")].split(",")[:3])
    px = np.asarray(img).reshape(-1, 3)
    painted = int((np.abs(px.astype(int) - np.array(rgb)).sum(axis=1) <= 6).sum())
    assert painted > 40, f"stage colour {rgb} barely visible in {path} ({painted} px)"


# ------------------------------------------------------------------------------------------ tests
def test_app_routes_pages(settings):
    """app/main.py serves the pages (fails until it includes app.routes.pages.router)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    client = TestClient(create_app(settings))  # not entered: no lifespan, the pages need no runtime
    for path in ("/widget?agent_id=a1", "/board", "/static/nuqi.js"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)


def test_pages_and_static_files(server):
    for path, kind in (("/widget?agent_id=a1", "text/html"), ("/board", "text/html"),
                       ("/static/nuqi.css", "text/css"), ("/static/nuqi.js", "text/javascript")):
        r = httpx.get(server + path, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), (path, r.status_code)
    for bad in ("/static/..%2Fmain.py", "/static/.env", "/static/nope.js", "/static/pages.py"):
        assert httpx.get(server + bad, timeout=10).status_code == 404, bad
    html = httpx.get(server + "/widget", timeout=10).text + httpx.get(server + "/board", timeout=10).text
    assert "http://" not in html and "https://" not in html  # no CDN: works offline


def test_widget_follows_live_call_and_acks(server, browser, feeder):
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 360, "height": 520}, locale="zh-CN")
    sse, poll = ctx.new_page(), ctx.new_page()
    errors_sse, errors_poll = _track_errors(sse), _track_errors(poll)
    sse.goto(f"{server}/widget?agent_id={AGENT}")
    poll.goto(f"{server}/widget?agent_id={AGENT}&transport=poll")
    sse.wait_for_function("document.body.dataset.conn === 'sse'", timeout=10_000)
    poll.wait_for_function("document.body.dataset.conn === 'poll'", timeout=10_000)
    assert sse.text_content("#stage-name") == "等待通话"
    assert sse.is_visible("#empty") and not sse.is_visible("#ack")

    t0 = time.monotonic()
    feeder.start()
    # while the call is still being posted, the widget reaches 显化抱怨 or higher with guidance
    shown = ("() => Number(document.body.dataset.level) >= 3 && document.body.dataset.alertId !== ''"
             " && document.querySelectorAll('#guidance li').length > 0")
    sse.wait_for_function(shown, timeout=90_000)
    t_shown = time.monotonic() - t0
    name = sse.text_content("#stage-name")
    assert name in STAGES[3:], name
    lines = [t.strip() for t in sse.locator("#guidance li").all_text_contents()]
    assert lines and all(lines), lines
    poll.wait_for_function(shown, timeout=30_000)  # the long-poll fallback delivers too

    feeder.join(120)
    alerts = _api(server, "/v1/alerts", agent_id=AGENT)["alerts"]
    assert alerts and all(a["call_id"] == CALL_ID for a in alerts)
    latest = alerts[-1]
    for page in (sse, poll):
        page.wait_for_function(f"document.body.dataset.alertId === '{latest['id']}'", timeout=20_000)
    state = _api(server, f"/v1/calls/{CALL_ID}", timeline="false")["state"]
    sse.wait_for_function(f"document.body.dataset.level === '{state['stage']['level']}' && "
                          f"document.getElementById('gNum').textContent === '{state['anger']['fused']:.2f}'",
                          timeout=10_000)
    # safe rendering: the server's strings appear verbatim as text
    assert sse.text_content("#explanation") == latest["explanation"]
    assert sse.locator("#guidance li").all_text_contents() == latest["guidance"]
    assert sse.text_content("#stage-name") == state["stage"]["name"]
    assert sse.evaluate("window.__nuqiWidget.beeps") >= 1 and sse.evaluate("window.__nuqiWidget.flashes") >= 1
    sse.wait_for_timeout(1600)  # let the escalation flash fade before the screenshot
    shot = SHOTS / "widget.png"
    sse.screenshot(path=str(shot))
    _check_screenshot(shot, (360, 520), sse.evaluate("getComputedStyle(document.getElementById('stage-name')).color"))

    # ack: the alert is acked (by the agent) on the server and no longer pending in both widgets; its guidance
    # stays on screen, marked as acknowledged, while the call is still at its stage (issue 17 item 19)
    sse.click("#ack")
    sse.wait_for_function("document.body.dataset.alertId === ''", timeout=10_000)
    assert state["stage"]["level"] >= latest["level"]
    assert sse.evaluate("document.body.dataset.keptAlertId") == str(latest["id"])
    assert not sse.is_visible("#empty") and not sse.is_visible("#ack")
    assert sse.locator("#guidance li").all_text_contents() == latest["guidance"]
    assert "已确认" in sse.text_content("#alert-sev")
    after = {a["id"]: a for a in _api(server, "/v1/alerts", agent_id=AGENT)["alerts"]}
    assert after[latest["id"]]["acked"] is True and after[latest["id"]]["acked_by"] == AGENT
    assert all(a["acked"] for a in after.values()), "older alerts of the same call stay unacked"
    poll.wait_for_function("document.body.dataset.alertId === ''", timeout=10_000)
    sse.screenshot(path=str(SHOTS / "widget_acked.png"))

    # a reload resumes after the last seen alert id and does not bring the acked alert back
    sse.reload()
    sse.wait_for_function("document.body.dataset.conn === 'sse'", timeout=10_000)
    sse.wait_for_timeout(1500)
    assert sse.evaluate("document.body.dataset.alertId") == ""
    assert sse.evaluate("document.body.dataset.keptAlertId") == str(latest["id"])  # the stage still stands
    assert not errors_sse and not errors_poll, errors_sse + errors_poll
    print(f"\nwidget showed stage >= 3 after {t_shown:.1f} s; call posted in {feeder.seconds:.1f} s; "
          f"screenshots in {SHOTS}")
    ctx.close()


def test_stage_scale_api(server):
    """GET /v1/stages: the stage names and anger thresholds of rules.yaml (what the pages draw)."""
    from pipelines.fusion.rules import default_rules

    rules = default_rules()
    scale = _api(server, "/v1/stages")
    assert [s["name"] for s in scale["stages"]] == [rules.name(i) for i in range(7)] == STAGES
    assert {int(k): v for k, v in scale["rise"].items()} == rules.rise
    bands = scale["bands"]
    assert [b["from"] for b in bands[1:4]] == [rules.rise[1], rules.rise[2], rules.rise[3]]
    assert [b["level"] for b in bands] == [0, 1, 2, 3, 4] and bands[-1]["to"] == scale["gauge_max"] < 1
    assert all(a["to"] == b["from"] for a, b in zip(bands, bands[1:]))


def test_widget_gauge_on_the_stage_scale(server, browser, feeder):
    """Issue 17 item 18: the gauge coloured at 0.35/0.5/0.65/0.8 while the rules raise stages at 0.16/0.20/0.24,
    so a red 投诉 badge sat beside a green 0.29.  The gauge now draws the rules' bands in the stages' colours."""
    feeder.join(120)
    scale = _api(server, "/v1/stages")
    page = browser.new_page(viewport={"width": 360, "height": 520}, locale="zh-CN")
    errors = _track_errors(page)
    page.goto(f"{server}/widget?agent_id={AGENT}&call_id={CALL_ID}")
    state = _api(server, f"/v1/calls/{CALL_ID}", timeline="false")["state"]
    fused = state["anger"]["fused"]
    page.wait_for_function(f"document.getElementById('gNum').textContent === '{fused:.2f}'", timeout=15_000)
    # the stage names are the service's (GET /v1/stages), not a copy in the page
    assert page.evaluate("Nuqi.STAGE_NAMES.slice()") == STAGES
    assert page.locator("#gBands path.g-band").count() == len(scale["bands"])
    colours = page.eval_on_selector_all("#gBands path.g-band", "ps => ps.map(p => p.dataset.level)")
    assert colours == [str(b["level"]) for b in scale["bands"]]

    def band(x: float) -> int:
        return next((b["level"] for b in scale["bands"] if x < b["to"]), scale["bands"][-1]["level"])

    assert page.evaluate("document.querySelector('.gauge').dataset.level") == str(band(fused))
    for x in (0.05, 0.17, 0.21, 0.29, 0.36, 0.9):
        assert page.evaluate(f"Nuqi.angerLevel({x})") == band(x), x
    assert page.evaluate("Nuqi.angerLevel(0.29)") >= 3  # 0.29 is past rise[3]: 显化抱怨's colour, not green
    assert page.evaluate("Nuqi.angerFraction(0.29)") == pytest.approx(0.29 / scale["gauge_max"])
    dot = page.evaluate("getComputedStyle(document.getElementById('gDot')).fill")
    want = page.evaluate(f"getComputedStyle(document.body).getPropertyValue('--lv{band(fused)}').trim()")
    r, g, b = (int(want[i:i + 2], 16) for i in (1, 3, 5))
    assert dot == f"rgb({r}, {g}, {b})", (dot, want)
    assert not errors, errors
    page.close()


def test_widget_keeps_guidance_after_ack_until_the_stage_is_over(server, browser):
    """Issue 17 item 19: the widget dropped the guidance after ack while the call was still at 投诉."""
    call_id, agent = "pw-keep", "a9"
    page = browser.new_page(viewport={"width": 360, "height": 520}, locale="zh-CN")
    errors = _track_errors(page)
    feed = CallFeeder(server, call_id, agent).start()
    deadline = time.monotonic() + 30
    while httpx.get(f"{server}/v1/calls/{call_id}", timeout=10).status_code != 200:  # a pinned call must exist
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page.goto(f"{server}/widget?agent_id={agent}&call_id={call_id}&transport=poll")
    feed.join(120)
    latest = _api(server, "/v1/alerts", agent_id=agent)["alerts"][-1]
    page.wait_for_function(f"document.body.dataset.alertId === '{latest['id']}'", timeout=20_000)
    page.click("#ack")
    page.wait_for_function("document.body.dataset.alertId === ''", timeout=10_000)
    page.wait_for_timeout(2500)  # a call-state poll later the stage still stands: the guidance stays
    assert page.evaluate("document.body.dataset.keptAlertId") == str(latest["id"])
    assert page.locator("#guidance li").all_text_contents() == latest["guidance"]
    # the call ends: the guidance goes
    assert httpx.post(f"{server}/v1/calls/{call_id}/end", timeout=30).status_code == 200
    page.wait_for_function("document.body.dataset.keptAlertId === ''", timeout=10_000)
    assert page.is_visible("#empty")
    assert not errors, errors
    page.close()


def test_board_lists_calls_by_stage(server, browser, feeder):
    SHOTS.mkdir(parents=True, exist_ok=True)
    feeder.join(120)
    CallFeeder(server, "pw-calm", EVIL_AGENT, name="call_calm_8k", max_chunks=4).join(60)
    board = _api(server, "/v1/board")["calls"]
    row = {c["call_id"]: c for c in board}
    assert {CALL_ID, "pw-calm"} <= set(row)

    page = browser.new_page(viewport={"width": 1280, "height": 760}, locale="zh-CN")
    errors = _track_errors(page)
    page.goto(f"{server}/board")
    page.wait_for_selector(f'tr[data-call-id="{CALL_ID}"]', timeout=10_000)
    order = page.eval_on_selector_all("#rows tr", "rs => rs.map(r => r.dataset.callId)")
    assert order.index(CALL_ID) < order.index("pw-calm")
    esc = page.locator(f'tr[data-call-id="{CALL_ID}"]')
    level = row[CALL_ID]["stage"]["level"]
    assert level >= 3 and esc.get_attribute("data-level") == str(level)
    assert row[CALL_ID]["stage"]["name"] in esc.locator(".badge").text_content()
    assert esc.locator("td").nth(5).text_content() == str(row[CALL_ID]["unacked_alerts"])
    points = esc.locator("polyline.spark-line").get_attribute("points").split()
    assert len(points) == len(row[CALL_ID]["trend"]) > 3
    calm = page.locator('tr[data-call-id="pw-calm"]')
    assert calm.locator("td").nth(2).text_content() == EVIL_AGENT  # rendered as text, not markup
    assert page.locator("#rows b, #rows img").count() == 0

    esc.click()
    page.wait_for_selector("#d-body:not(.hidden)")
    history = row[CALL_ID]["stage"]["history"]
    assert page.locator("#d-history li").count() == len(history) + 1 >= 2  # + the call's start (平静)
    assert row[CALL_ID]["stage"]["name"] in page.text_content("#d-history li:first-child")
    latest = _api(server, "/v1/alerts", call_id=CALL_ID)["alerts"][-1]
    page.wait_for_function("document.querySelector('#d-alert .d-expl') !== null", timeout=10_000)
    assert page.text_content("#d-alert .d-expl") == latest["explanation"]
    page.wait_for_timeout(300)
    shot = SHOTS / "board.png"
    page.screenshot(path=str(shot))
    _check_screenshot(shot, (1280, 760), page.evaluate(
        "getComputedStyle(document.querySelector('#rows tr .badge')).color"))
    assert not errors, errors
    page.close()


def test_pages_with_api_keys(models, browser, tmp_path):
    """With auth on, the pages pass ?api_key= on as X-API-Key (and on the EventSource URL): an agent key sees
    its own call and alerts, the board needs a supervisor key and says so without one."""
    root = "nq-pages-root-key-0123456789"
    with _serve(models, tmp_path / "state", auth_enabled=True, bootstrap_admin_key=root,
                rate_limit_per_s=1000.0, rate_limit_burst=1000) as base:
        def key(role: str, agent_id: str | None = None) -> str:
            r = httpx.post(f"{base}/v1/admin/keys", headers={"X-API-Key": root}, timeout=10,
                           json={"role": role, "agent_id": agent_id, "name": f"pages test {role}"})
            assert r.status_code == 201, r.text
            return r.json()["key"]

        ingest, agent, supervisor = key("ingest"), key("agent", "a5"), key("supervisor")
        assert httpx.get(f"{base}/widget", timeout=10).status_code == 200  # pages are public
        assert httpx.get(f"{base}/v1/alerts", timeout=10).status_code == 401  # data is not

        page = browser.new_page(viewport={"width": 360, "height": 520}, locale="zh-CN")
        crashes: list[str] = []
        page.on("pageerror", lambda exc: crashes.append(str(exc)))
        page.goto(f"{base}/widget?agent_id=a5&api_key={agent}")
        page.wait_for_function("document.body.dataset.conn === 'sse'", timeout=10_000)
        CallFeeder(base, "pw-auth", "a5", api_key=ingest).join(120)
        alerts = _api(base, "/v1/alerts", key=agent)["alerts"]
        assert alerts and {a["agent_id"] for a in alerts} == {"a5"}
        page.wait_for_function(f"document.body.dataset.alertId === '{alerts[-1]['id']}' && "
                               "document.getElementById('gNum').textContent !== '—'", timeout=20_000)
        assert page.text_content("#explanation") == alerts[-1]["explanation"]
        page.click("#ack")
        page.wait_for_function("document.body.dataset.alertId === ''", timeout=10_000)
        assert _api(base, "/v1/alerts", key=agent)["alerts"][-1]["acked_by"] == "a5"

        page.goto(f"{base}/board")  # no key: the board explains what is missing
        page.wait_for_function("document.body.dataset.conn === 'error'", timeout=10_000)
        assert "api_key" in page.text_content("#error")
        page.goto(f"{base}/board?api_key={supervisor}")
        page.wait_for_selector('tr[data-call-id="pw-auth"]', timeout=10_000)
        assert not crashes, crashes
        page.close()
