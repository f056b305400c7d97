"""What `cryptiq run` does for the ops dashboard: a first admin user, and a screenshot of the live page.

The screenshot is the demo's proof that the dashboard shows the running system: taken in Debian's
headless Chromium (driven by playwright, installed with the project's dev extras) right before the
agents stop, logged in as a viewer account kept for it (`dashboard-screenshot`, a new random password
each time, disabled again afterwards).
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pyotp
import typer

from memory.database import create_engine
from memory.users import UserExistsError, UserStore

SCREENSHOT_USER = "dashboard-screenshot"
CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 15_000


async def first_admin(postgres_url: str) -> None:
    """With no API user at all, create `admin` and print its password and TOTP URI, once."""
    engine = create_engine(postgres_url)
    try:
        store = UserStore(engine)
        if await store.list():
            return
        password = secrets.token_urlsafe(12)
        try:
            user = await store.add("admin", "admin", password)
        except UserExistsError:
            return  # another process made it first
    finally:
        await engine.dispose()
    uri = pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.name, issuer_name="CryptIQ")
    typer.secho("first start: created the API user 'admin' (shown once; `cryptiq api user add` adds more)",
                fg=typer.colors.YELLOW)
    typer.echo(f"  password: {password}")
    typer.echo(f"  TOTP for commands (scan into an authenticator app): {uri}")


async def screenshot(url: str, postgres_url: str, path: Path) -> None:
    """Log in to the dashboard at `url` as the screenshot viewer and save the page as PNG at `path`."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        raise typer.BadParameter("--screenshot needs playwright: pip install -e '.[dev]'") from None
    chromium = next((found for found in map(shutil.which, CHROMIUM) if found), None)
    if chromium is None:
        raise typer.BadParameter("--screenshot needs Debian's chromium: apt-get install -y chromium")
    password = secrets.token_urlsafe(16)
    engine = create_engine(postgres_url)
    store = UserStore(engine)
    try:
        if not await store.set_password(SCREENSHOT_USER, password):
            await store.add(SCREENSHOT_USER, "viewer", password)
        await store.set_disabled(SCREENSHOT_USER, False)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                page = await browser.new_page(viewport={"width": 1440, "height": 1000})
                page.set_default_timeout(WAIT_MS)
                await page.goto(url)
                await page.fill("#username", SCREENSHOT_USER)
                await page.fill("#password", password)
                await page.click("#login-form button[type=submit]")
                await page.wait_for_selector("#dashboard", state="visible")
                await page.wait_for_function(  # live state arrived: agents and streams listed
                    # a function, not a bare expression: the dashboard's CSP forbids eval
                    "() => document.querySelectorAll('#agents tbody td:not(.muted)').length > 0"
                    " && document.querySelectorAll('#streams tbody td:not(.muted)').length > 0"
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(path), full_page=True)
            finally:
                await browser.close()
    finally:
        await store.set_disabled(SCREENSHOT_USER, True)
        await engine.dispose()
