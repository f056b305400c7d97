"""The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by playwright).

Logs in through the page, waits for the agents and regimes stored in Redis, follows a decision's
flow, changes Redis and sees the page follow without a reload, engages the kill switch with the
operator's TOTP code, and checks a screenshot is a real rendering, not a blank page.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from apitools import PASSWORD, ApiUnderTest, risk_breakdown, sample_context
from PIL import Image
from playwright.async_api import Browser, Page, async_playwright

from busio import produce
from memory.decision_log import DecisionLog, DecisionRecord
from memory.ledger import LedgerState, LedgerStore
from topics.registry import RISK_BREAKDOWN

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")  # Debian's package, by path or name
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 10_000


def _chromium() -> str:
    found = next((path for path in map(shutil.which, CHROMIUM) if path is not None), None)
    assert found is not None, "install Debian's chromium (`make test` does: apt-get install -y chromium)"
    return found


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # playwright launches it with a new, empty user data dir each time.
        browser = await playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def _text_appears(page: Page, selector: str, text: str) -> None:
    await page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector)?.textContent || '').includes(text)",
        arg=[selector, text], timeout=TIMEOUT_MS,
    )


def _pixel_stats(png: bytes) -> tuple[int, float]:
    """(distinct colours, share of the most common colour) of a PNG."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours: Any = image.getcolors(maxcolors=image.width * image.height)
    most = max(count for count, _ in colours)
    return len(colours), most / (image.width * image.height)


async def test_the_dashboard_logs_in_shows_live_state_and_refreshes_without_reload(
    api: ApiUnderTest, browser: Browser, tmp_path: Path,
) -> None:
    began = time.monotonic()
    now_ms = int(api.clock() * 1000)
    await api.save_context(sample_context(as_of=now_ms, regime="bull"))
    await DecisionLog(api.engine).record(DecisionRecord(
        id="dash-decision-1", agent="orchestrator", symbol="BTC/USDT", ts=now_ms, kind="intent",
        reasons=["fast crossed above slow"],
        trace={"strategy": "sma_cross", "action": "enter_long", "reason": "fast crossed above slow",
               "regime": "bull", "signals": {"fast": 101.0, "slow": 99.0},
               "candle": {"timeframe": "1h", "open_time": now_ms - 3_600_000, "close": 101.5}},
    ))

    books = {"assets": {}, "positions": {"binance:ETH/USDT": {
        "quantity": "1.25", "average_cost": "3000", "mark": "3100", "realised_pnl": "12.5"}}}
    await LedgerStore(api.engine).append("paper", [], state=LedgerState(version=1, ts=now_ms, state=books))

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(api.url)
    assert await page.is_visible("#login-panel")
    assert not await page.is_visible("#dashboard")

    await page.fill("#username", "otto")
    await page.fill("#password", "wrong password")
    await page.click("#login-form button[type=submit]")
    await _text_appears(page, "#login-error", "wrong user name or password")

    await page.fill("#password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#dashboard", state="visible")
    await _text_appears(page, "#who", "otto (operator)")

    # Live data from Redis: the agent and the regime stored above.
    await _text_appears(page, "#agents tbody", "technical")
    await _text_appears(page, "#streams tbody", "binance:BTC/USDT:1h")
    assert "bull" in await page.inner_text("#streams tbody")
    assert "sma_cross" in await page.inner_text("#streams tbody")
    assert "RetriableError: postgres unreachable" in await page.inner_text("#agents tbody")
    assert "dec-open-1" in await page.inner_text("#intents tbody")
    await _text_appears(page, "#positions tbody", "binance:ETH/USDT")
    assert "1.25" in await page.inner_text("#positions tbody")

    # The risk agent's breakdown of a portfolio, from Kafka: its figures and its holdings.
    await produce(api.kafka, RISK_BREAKDOWN.name, [risk_breakdown("dash-portfolio", now_ms, "1000")])
    await _text_appears(page, "#risk tbody", "dash-portfolio")
    figures = await page.inner_text("#risk tbody")
    assert "0.50x" in figures  # leverage
    assert "62.00 %" in figures  # yearly volatility
    await _text_appears(page, "#risk-holdings tbody", "binance:BTC/USDT")

    # A decision, clicked: its flow from candle to fills.
    await _text_appears(page, "#decisions tbody", "fast crossed above slow")
    await page.click("#decisions tbody tr[data-id='dash-decision-1']")
    await _text_appears(page, "#flow-steps", "fills")
    flow = await page.inner_text("#flow-steps")
    for stage in ("CANDLE", "SIGNALS", "INTENT", "RISK", "ORDERS", "FILLS"):
        assert stage in flow.upper()
    assert "regime bull" in flow

    # A change in Redis shows up without a reload (the page polls every 2 s).
    await page.evaluate("window.__sameDocument = true")
    await api.save_context(sample_context(as_of=now_ms + 1000, regime="bear", agent_lag=42))
    await _text_appears(page, "#streams tbody", "bear")
    await _text_appears(page, "#agents tbody", "42")
    assert await page.evaluate("window.__sameDocument === true")

    # The kill switch from the page: the operator's TOTP code, then the switch read back from Kafka.
    await page.fill("#kill-reason", "drill from the dashboard")
    await page.fill("#kill-totp", api.code("otto"))
    await page.click("#kill-engage")
    await _text_appears(page, "#kill-result", "sent")
    await _text_appears(page, "#kill-state", "engaged")

    # ...and released again the same way (the risk and execution agents of later tests read risk.control).
    await page.fill("#kill-reason", "drill over")
    await page.fill("#kill-totp", api.next_code("otto"))
    await page.click("#kill-release")
    await _text_appears(page, "#kill-state", "released")

    png = await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert png.startswith(b"\x89PNG")
    colours, dominant = _pixel_stats(png)
    assert colours > 50, f"only {colours} colours: the page looks blank"
    assert dominant < 0.95, f"one colour covers {dominant:.0%} of the page: it looks blank"
    await page.close()
    assert time.monotonic() - began < 30


async def test_the_run_screenshot_waits_for_live_state_and_is_a_real_rendering(
    api: ApiUnderTest, fresh_db: str, tmp_path: Path,
) -> None:
    """`cryptiq run --screenshot FILE` (cli.dashboard.screenshot): logs in as its own viewer, waits
    until agents and streams are listed, and saves the whole page."""
    from cli.dashboard import screenshot

    await api.save_context(sample_context(as_of=int(api.clock() * 1000), regime="neutral"))
    path = tmp_path / "run-dashboard.png"
    await screenshot(api.url, fresh_db, path)
    with Image.open(path) as image:
        assert image.width == 1440
    colours, most = _pixel_stats(path.read_bytes())
    assert colours > 50
    assert most < 0.9
