"""End to end in a real browser: `streamlit run app.py` as a subprocess, driven by Playwright with the system
Chromium. Opens Generate, runs, changes the schedule and the cache stride, runs again, and checks that the
image, the token grid and the FLOPs chart are visible and that the FLOPs headline followed the settings.
Then two browser sessions decode at the same time on the one server (one shared, cached model) and must each
get what a single session gets. Screenshots go to tests/artifacts/ (gitignored)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.app_assets import require_assets

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

require_assets()
if not Path(CHROMIUM).is_file():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{CHROMIUM} is missing; the browser test must run under CI")
    pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
PlaywrightTimeout = pytest.importorskip("playwright.sync_api").TimeoutError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    log = open(ARTIFACTS.mkdir(parents=True, exist_ok=True) or ARTIFACTS / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"streamlit did not start; see {log.name}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _headline(page) -> str:
    return page.get_by_text(re.compile(r"x fewer FLOPs than the full model")).first.inner_text()


def _wait_for_run(page, previous_fingerprint: str | None) -> str:
    """The run caption ("Run N · Tokens fingerprint ...") once the page shows a new run and its animation."""
    fp = page.get_by_text(re.compile(r"Run \d+ · Tokens fingerprint"))
    deadline = time.time() + 120
    while True:
        text = fp.first.inner_text() if fp.count() else ""
        if text and text != previous_fingerprint and page.get_by_text("▶ Play").count():
            return text
        assert time.time() < deadline, "the run did not finish within 120 s"
        page.wait_for_timeout(250)


def _run_and_wait(page, previous_fingerprint: str | None) -> str:
    page.get_by_role("button", name="Generate").click()
    return _wait_for_run(page, previous_fingerprint)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_generate_page_end_to_end(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{server}/Generate", wait_until="networkidle")  # the fresh server's first URL names a page
    page.get_by_role("button", name="Generate").wait_for(timeout=60_000)
    # app.py's navigation, not the pages/ folder's file list (which starts with "app"), even on this first visit
    nav = [line for line in page.get_by_test_id("stSidebarNav").inner_text().splitlines() if line.strip()]
    assert nav == ["Home", "Generate", "Video", "Compare", "Sweep", "Model"], nav

    fp1 = _run_and_wait(page, None)
    first = _headline(page)
    page.screenshot(path=str(ARTIFACTS / "generate_default.png"), full_page=True)

    schedule = page.get_by_role("textbox", name="Schedule (text form)")
    schedule.fill("XS*3,S*3,M*3,L*3")
    schedule.press("Enter")
    page.wait_for_timeout(1000)
    slider = page.locator("[data-testid='stSidebar']").get_by_role("slider")  # the cache stride
    slider.focus()
    slider.press("Home")  # stride 1: refresh every step
    page.wait_for_timeout(1000)
    fp2 = _run_and_wait(page, fp1)
    second = _headline(page)

    assert first != second, f"the FLOPs headline did not change with the settings: {first!r}"
    assert "stride" in page.url and "stride=1" in page.url and "XS" in page.url, page.url
    main = page.locator("[data-testid='stMain']")
    plots = main.locator(".js-plotly-plot")
    for i in range(4):  # the animated grids, FLOPs per step, cumulative FLOPs, quality
        plots.nth(i).wait_for(state="visible", timeout=30_000)
    page.get_by_text("▶ Play").first.click()  # the browser plays the stored run: no server round trip
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "generate_changed.png"), full_page=True)
    assert fp2 != fp1
    page.close()


PAGES = ["Generate", "Video", "Compare", "Sweep", "Model"]


@pytest.mark.parametrize("first", ["Generate", "Compare"])
def test_walk_every_page_in_either_order(server, browser, first):
    """Every page opens without an error from the sidebar, whichever page comes first, and Generate still runs
    after each detour."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, wait_until="networkidle")
    order = [first] + [p for p in PAGES if p != first]
    previous = None
    for name in order:
        sidebar = page.locator("[data-testid='stSidebarNav']")
        sidebar.get_by_role("link", name=name, exact=True).click()
        page.wait_for_function(f"() => location.pathname.endsWith('/{name}')", timeout=30_000)
        page.wait_for_timeout(1500)
        page.get_by_role("heading", name=name).first.wait_for(timeout=60_000)
        errors = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
        assert errors.count() == 0, f"{name}: {errors.first.inner_text()}"
        if name != "Generate":
            sidebar.get_by_role("link", name="Generate", exact=True).click()
            page.get_by_role("button", name="Generate").wait_for(timeout=60_000)
            previous = _run_and_wait(page, previous)
    page.close()


LINKS = [{"steps": "12", "schedule": "magnets", "seed": "1", "cls": "Trouser", "n": "4"},
         {"steps": "12", "schedule": "XS*6,L*6", "stride": "1", "seed": "2", "cls": "Bag", "n": "4", "cfg": "2.0"}]


def _open_link(browser, server, link):
    """A new browser session opened from a shareable link: the page runs the linked settings on load."""
    page = browser.new_context().new_page()
    page.goto(f"{server}/Generate?{urllib.parse.urlencode(link)}")
    return page


def test_two_sessions_at_once_match_single_sessions(server, browser):
    alone = []
    for link in LINKS:
        page = _open_link(browser, server, link)
        alone.append((_wait_for_run(page, None), _headline(page)))
        page.context.close()
    pages = [_open_link(browser, server, link) for link in LINKS]  # both decode on the server at once
    together = [(_wait_for_run(page, None), _headline(page)) for page in pages]
    pages[0].screenshot(path=str(ARTIFACTS / "concurrent_session_1.png"))
    for page in pages:
        page.context.close()
    assert together == alone
    assert together[0] != together[1]  # and the sessions did not see each other's settings


def test_schedule_table_edit_updates_the_text_form(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{server}/Generate", wait_until="networkidle")
    page.get_by_text("Per-step table").click()
    grid = page.locator("[data-testid='stDataFrameResizable']").first
    grid.wait_for()
    box = grid.bounding_box()
    # The grid is a canvas: double-click the first row's sub-model cell (second column, below the header row).
    option = page.get_by_role("option", name="L", exact=True).first
    for _ in range(5):  # the canvas may still be laying out when the expander opens: retry until the editor shows
        page.mouse.dblclick(box["x"] + 90, box["y"] + 52)
        try:
            option.wait_for(timeout=3000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    option.click()
    page.mouse.click(box["x"] + 100, box["y"] - 200)  # click outside the grid to commit the edit
    text = page.get_by_role("textbox", name="Schedule (text form)")
    page.wait_for_function("() => document.querySelector(\"input[aria-label='Schedule (text form)']\")"
                           ".value.startsWith('L*1')", timeout=30_000)
    assert text.input_value() == "L*1,XS*1,S*2,M*3,L*5"
    # The URL follows on the rerun that the edit triggers, a moment after the text form.
    page.wait_for_function("() => location.search.includes('schedule=L%2A1')", timeout=30_000)
    page.close()
