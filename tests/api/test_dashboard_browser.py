"""The dashboard in a real Chromium (Debian's, driven by Playwright): start a run from the page,
see live progress, then the final counts. Screenshots go to test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.api.conftest import TOKEN
from tests.api.serve_process import serve, write_items
from tests.system_packages import debian_tool

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROWS = 3_000_000
LIVE_PROGRESS = (
    "() => [...document.querySelectorAll('[data-testid=task-row]')].some(r => r.dataset.status === 'running' &&"
    f" +r.dataset.rows > 0 && +r.dataset.rows < {ROWS})"
)


@pytest.fixture(scope="module")
def chromium() -> str:
    return debian_tool("/usr/bin/chromium", "chromium", "fonts-liberation")


def test_start_a_run_from_the_page_and_watch_it(tmp_path: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    spec = write_items(tmp_path, ROWS)
    # Small batches through Python (no pushdown, which DuckDB finishes in a blink):
    # progress every 50,000 rows, so the run is visibly under way for a while.
    with (
        serve(tmp_path, spec, env={"AGENT_ETL_BATCH_ROWS": "50000", "AGENT_ETL_PUSHDOWN": "false"}) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/#token={TOKEN}")
        page.wait_for_selector("[data-testid=connection]:has-text('live')", timeout=15_000)
        # The token from the link is traded for a session cookie no script can read, and leaves the URL.
        assert TOKEN not in page.url
        assert TOKEN not in page.evaluate("JSON.stringify(localStorage) + document.cookie")
        (cookie,) = page.context.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("agent_etl_session", True, "Strict")
        assert TOKEN not in cookie["value"]
        page.click("[data-testid=start-items]")
        page.wait_for_url("**/#/runs/*")
        page.wait_for_function(LIVE_PROGRESS, polling=25, timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "dashboard-run-live.png"), full_page=True)
        page.wait_for_selector("[data-testid=run-summary][data-status=succeeded]", timeout=60_000)
        assert page.inner_text("[data-testid=rows-written]") == "3,000,000"
        assert page.inner_text("[data-testid=rows-read]") == "3,000,000"
        assert page.get_attribute("[data-testid=task-row]", "data-status") == "succeeded"
        assert "commit" in page.inner_text("[data-testid=decisions]")
        # After the run: no rate floating without a value, and the recorded duration, as the run list shows it.
        assert page.inner_text("[data-testid=rows-per-second-now]") == "–"
        run_id = page.url.rsplit("/", 1)[1]
        recorded = page.evaluate(f"fetch('/api/v1/runs/{run_id}').then(r => r.json()).then(r => r.seconds)")
        page.wait_for_function(
            f"document.querySelector('[data-testid=run-seconds]').innerText === {recorded:.3f}.toFixed(1)",
            timeout=15_000,
        )
        shown = page.inner_text("[data-testid=run-seconds]")
        page.screenshot(path=str(ARTIFACTS / "dashboard-run-done.png"), full_page=True)
        page.click("text=Runs")
        page.wait_for_selector("[data-testid=run-row] >> text=succeeded")
        row = page.locator("[data-testid=run-row]", has_text=run_id)
        assert row.locator("td").nth(4).inner_text() == shown
        browser.close()
    assert errors == []
    assert TOKEN not in (tmp_path / "serve.log").read_text()  # the access log saw no token in a URL
