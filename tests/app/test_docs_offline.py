"""Issue 17.13: /docs (Swagger UI) and /redoc render on a host without internet access: their JavaScript, CSS
and icon come from the service itself (app/docs.py), checked in a real headless Chromium with every
non-loopback request blocked."""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.settings import ServiceSettings
from tests.app.live_server import live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def test_docs_pages_reference_only_local_assets(tmp_path):
    from app.main import create_app

    with TestClient(create_app(ServiceSettings(state_dir=tmp_path, log_json=False))) as c:
        for page in ("/docs", "/redoc"):
            html = c.get(page).text
            urls = re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'")\s>]+)""", html)
            assert urls, html[:500]
            remote = [u for u in urls if re.match(r"^(https?:)?//", u)]
            assert not remote, (page, remote)
            for u in urls:
                if u.startswith("/docs-assets/"):
                    r = c.get(u)
                    assert r.status_code == 200 and len(r.content) > 1000, (u, r.status_code)


@contextmanager
def _serve(state_dir: Path):
    from app.main import create_app

    with live_server(create_app(ServiceSettings(state_dir=state_dir, log_json=False))) as base:
        yield base


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium")
def test_docs_render_in_chromium_without_network(tmp_path):
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def only_loopback(route):  # noqa: ANN001 - the "network" of an offline host: loopback only
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with _serve(tmp_path / "state") as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", only_loopback)
            page.goto(f"{base}/docs")
            page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
            assert "nuqi" in page.inner_text(".swagger-ui .info .title")
            assert page.locator(".swagger-ui .opblock").count() >= 15
            assert page.locator(".opblock-summary-path", has_text="/v1/batch").count() >= 1
            assert not blocked, blocked
            page.goto(f"{base}/redoc")
            page.wait_for_selector("redoc [role=search], redoc h1, .api-info h1", timeout=30_000)
            assert "nuqi" in page.inner_text("body")
        finally:
            browser.close()
    # ReDoc renders too; only its "powered by" logo image is remote (cosmetic, blocked here)
    assert all(u.startswith("https://cdn.redoc.ly/") and u.endswith(".svg") for u in blocked), blocked
