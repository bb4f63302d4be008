"""The processor's live status page in a real headless Chromium, fed by a real stack.

A simulated CP boots through the gateway; the page shows it online. The operator closes it
through the gateway's connected-CP API, and the gateway's presence document turns the row offline
with the close code, the reason and who closed.
Chromium comes from Debian (`scripts/install-test-tools.sh`); Playwright drives it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.server import Gateway
from processor.service import Processor
from processor.status_page import StatusPage
from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.processor import running_processor
from tests.support.simulator_process import SimulatorProcess

pytestmark = pytest.mark.integration

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
INSTALL_HINT = "run scripts/install-test-tools.sh (it installs Debian's chromium)"
ADMIN_TOKEN = "status-page-test-token-0123456789"


def chromium_path() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(f"the status page test needs Chromium, which is not installed: {INSTALL_HINT}")
    return found


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("the status page test needs Playwright: pip install -e '.[test]'")
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


@pytest.fixture
async def processor(private_broker: MosquittoProcess) -> AsyncIterator[Processor]:
    async with running_processor(private_broker.url) as running:
        yield running


@pytest.fixture
async def status_url(processor: Processor) -> AsyncIterator[str]:
    page = StatusPage(processor.status, "127.0.0.1", 0)
    await page.start()
    try:
        yield f"http://127.0.0.1:{page.port}/"
    finally:
        await page.close()


def disconnect(gateway: Gateway, cp_id: str, close: dict[str, Any]) -> int:
    """`DELETE /cps/<cp_id>` on the gateway's connected-CP API; the HTTP status."""
    assert gateway.admin is not None
    connection = http.client.HTTPConnection("127.0.0.1", gateway.admin.port, timeout=10)
    try:
        connection.request(
            "DELETE",
            f"/cps/{cp_id}",
            body=json.dumps(close),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


async def test_a_booted_cp_shows_online_then_offline_with_the_close_code(
    private_broker: MosquittoProcess, processor: Processor, status_url: str, browser_page: Any
) -> None:
    page = browser_page
    await page.goto(status_url)
    await page.wait_for_selector("#connection:text('live')", timeout=5000)
    async with running_gateway(
        private_broker.url, admin_token=ADMIN_TOKEN, admin_port=0
    ) as gateway:
        simulator = await SimulatorProcess.start(
            "--url", ws_url(gateway, "").rstrip("/"), "--cp-id", "CP1", "--cp-vendor", "Acme",
            "--cp-model", "Wallbox 7", "--cp-version", "4.2.0",
        )  # fmt: skip
        try:
            await simulator.wait_for_line(r"CP1: connected to central system")
            row = page.locator('tr[data-cp="CP1"]')
            await row.and_(page.locator('[data-status="online"]')).wait_for(timeout=2000)
            await (
                page.locator('tr[data-cp="CP1"] td:nth-child(3)')
                .filter(has_text="Acme Wallbox 7")
                .wait_for(timeout=2000)
            )
            assert "firmware 4.2.0" in await row.locator("td").nth(2).inner_text()
            assert await page.locator("#counts").inner_text() == "1 online of 1"
            await page.screenshot(path=str(Path("/tmp") / "status-page-online.png"))

            # The operator closes CP1 through the gateway's API: the gateway's own presence
            # document (code, reason, who closed) is what turns the row offline.
            status = await asyncio.to_thread(
                disconnect, gateway, "CP1", {"code": 4000, "reason": "firmware update"}
            )
            assert status == 200
            assert await simulator.wait() == 1  # refused by the gateway: no --reconnect
            offline = page.locator('tr[data-cp="CP1"][data-status="offline"]')
            await offline.wait_for(timeout=2000)
            status_text = await offline.locator("td.status").inner_text()
            assert "4000" in status_text and "firmware update" in status_text
            assert "by gateway" in status_text
            await page.screenshot(path=str(Path("/tmp") / "status-page-offline.png"))
        finally:
            await simulator.kill()
