"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

`make test` installs Debian's chromium when missing, so CI runs these; elsewhere they skip
with the reason. Screenshots go to ``test-artifacts/dashboard/`` (or
``$LEDGER_TEST_ARTIFACTS``); set ``LEDGER_README_SCREENSHOT=1`` to refresh
docs/img/dashboard.png as well.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import threading

import pytest

import ledger
from ledger.web.server import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = playwright.expect
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]
ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = pathlib.Path(os.environ.get("LEDGER_TEST_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def dashboard(populated_store):
    server = make_server(populated_store, host="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems = problems
    yield page
    context.close()


def shot(page, name: str) -> None:
    folder = ARTIFACTS / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_runs_table_filters_and_run_page_chart(page, dashboard, populated_store):
    page.goto(dashboard + "/")
    page.wait_for_selector("#runs tbody tr")
    assert page.locator("#runs tbody tr").count() == 3
    assert page.locator("#runs tbody tr[data-status=failed] .badge.failed").count() == 1
    shot(page, "runs")

    rows = page.locator("#runs tbody tr")
    page.fill("#search", "c")  # the search box narrows the table
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-status") == "failed"
    page.fill("#search", "")
    expect(rows).to_have_count(3)
    page.select_option("#filter-status", "finished")  # so does the status filter
    expect(rows).to_have_count(2)
    page.select_option("#filter-status", "")
    expect(rows).to_have_count(3)
    page.click("th[data-sort=name]")  # sort by name, ascending
    expect(page.locator("#runs tbody tr td:nth-child(2)")).to_have_text(["a", "b", "c"])

    page.click("#runs tbody tr td:nth-child(2) a")  # run 'a'
    page.wait_for_selector("#metric-charts svg path.series", state="attached")
    paths = page.locator("#metric-charts svg path.series")
    assert paths.count() == 2  # acc and loss
    assert len(paths.first.get_attribute("d")) > 50  # a real polyline, 10 points
    assert "lr" in page.inner_text("body") and "team" in page.inner_text("body")
    shot(page, "run")

    page.goto(dashboard + "/")
    page.wait_for_selector("#runs tbody tr")
    boxes = page.locator("#runs input.pick")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare")
    page.wait_for_selector("#compare-charts svg path.series", state="attached")
    assert page.locator("#compare-charts [data-metric=loss] path.series").count() == 2
    shot(page, "compare")

    # The reports of the analytics and costs areas, each with its chart and table.
    page.goto(f"{dashboard}/#/leaderboard")
    expect(page.locator("#report-hint")).to_be_visible()  # asks for a metric first
    page.fill("#report-form input[name=metric]", "acc")
    page.fill("#report-form input[name=mode]", "max")
    page.click("#report-form button")
    chart = page.locator("#report [data-chart=acc] svg rect.bar")
    expect(chart).to_have_count(2)  # runs a and b logged acc
    expect(page.locator("#report table tbody tr")).to_have_count(2)
    assert page.locator("#report table tbody tr").first.locator("td").nth(2).inner_text() == "a"
    shot(page, "leaderboard")
    for route, selector in (
        ("importance?metric=loss", "#report [data-chart=importance] svg rect.bar"),
        ("costs?by=experiment", "#report .chart-card svg rect.bar"),
    ):
        page.goto(f"{dashboard}/#/{route}")
        expect(page.locator(selector).first).to_be_visible()
        assert page.locator(".error, #report-error").count() == 0, page.inner_text("main")
        shot(page, route.split("?")[0])
    page.goto(f"{dashboard}/#/status")
    expect(page.locator("#status-table > *").first).to_be_visible()
    shot(page, "status")
    assert page.problems == []


def test_live_run_step_advances_on_screen(page, dashboard, populated_store, spawn, wait):
    proc, run_id = spawn("slow", "live-run")
    wait(
        lambda: (
            ledger.query("SELECT 1 FROM runs WHERE run_id = ?", populated_store, [run_id]).height
        )
    )
    page.goto(f"{dashboard}/#/run/{run_id}")
    expect(page.locator("#run-step")).to_have_text(re.compile(r"^\d+ / 10000$"), timeout=30_000)
    first = int(page.inner_text("#run-step").split("/")[0])
    wait(lambda: int(page.inner_text("#run-step").split("/")[0]) > first + 3, timeout=20)
    assert "running" in page.inner_text("#run-status")
    assert page.locator("#metric-charts svg path.series").count() == 2
    assert page.locator("#system-charts svg path.series").count() >= 1  # resource samples
    assert "%" in page.inner_text("#run-progress")
    shot(page, "live-run")
    if os.environ.get("LEDGER_README_SCREENSHOT"):
        page.screenshot(path=str(ROOT / "docs" / "img" / "dashboard.png"))

    proc.send_signal(signal.SIGTERM)  # the page notices the run ended
    proc.wait(timeout=20)
    expect(page.locator("#run-status")).to_have_text("killed", timeout=20000)
    expect(page.locator("#title-status")).to_have_text("killed")
    assert page.problems == []
