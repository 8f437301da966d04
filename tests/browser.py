"""Headless Debian Chromium driven over the DevTools protocol (CDP), with aiohttp.

No browser automation package is needed: Chromium is started with
``--remote-debugging-port=0``, writes the port it chose to
``<profile>/DevToolsActivePort``, and this module speaks CDP over the browser's
websocket with the aiohttp client the project already depends on. Each
:class:`Page` lives in its own browser context (own cookies), so two agents can
be signed in side by side.

Clicks and typing are real input events (``Input.dispatchMouseEvent`` at the
element's centre, ``Input.insertText``), not JavaScript ``click()`` calls.
Console errors, uncaught exceptions and CSP violations are collected per page
(:attr:`Page.errors`).

Usage::

    async with Chromium() as browser:
        page = await browser.new_page()
        await page.goto("http://127.0.0.1:8090/agent/login")
        await page.type("#agent", "agent1")
        await page.click("#sign-in")
        await page.screenshot(Path("shot.png"))

``PBXBRIDGE_CHROMIUM`` overrides the executable (default ``/usr/bin/chromium``,
Debian's ``chromium`` package, installed by ``scripts/setup.sh``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

CHROMIUM = os.environ.get("PBXBRIDGE_CHROMIUM", "/usr/bin/chromium")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    # No internet here: without these Chromium opens (refused) connections by the dozen.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--disable-dev-shm-usage",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--window-size=1280,900",
)


class BrowserError(RuntimeError):
    """Chromium failed, or a CDP command returned an error."""


def chromium_available() -> bool:
    """Whether the Chromium executable is installed."""
    return shutil.which(CHROMIUM) is not None or Path(CHROMIUM).is_file()


class Chromium:
    """One headless Chromium process.

    Args:
        executable: The browser binary.
        extra_flags: More command-line flags.
    """

    def __init__(self, executable: str = CHROMIUM, extra_flags: tuple[str, ...] = ()) -> None:
        self.executable = executable
        self.extra_flags = extra_flags
        self.profile = Path(tempfile.mkdtemp(prefix="pbxbridge-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[tuple[str, str | None, Callable[[dict[str, Any]], None]]] = []
        self.pages: list[Page] = []

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Launch the browser and connect to its DevTools websocket.

        Args:
            timeout: Seconds to wait for the DevTools port.

        Raises:
            BrowserError: If Chromium does not come up.
        """
        log = (self.profile / "chromium.log").open("wb")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; started once per run
            [
                self.executable,
                *FLAGS,
                *self.extra_flags,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one at the end
        )
        log.close()
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited {self.proc.returncode}: {self.log_tail()}")
            try:
                port, path = port_file.read_text().split("\n")[:2]
                if port and path:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise BrowserError(f"no DevTools port after {timeout}s: {self.log_tail()}")
            await asyncio.sleep(0.05)
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())
        info = await self.send("Browser.getVersion")
        self.version = str(info.get("product", ""))

    def log_tail(self, lines: int = 20) -> str:
        """The end of Chromium's own log."""
        try:
            text = (self.profile / "chromium.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            method, session = data.get("method", ""), data.get("sessionId")
            for wanted, wanted_session, callback in list(self._listeners):
                if wanted == method and wanted_session in (None, session):
                    callback(data.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrowserError("the DevTools connection closed"))

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Send one CDP command and wait for its answer.

        Args:
            method: CDP method (``Page.navigate``).
            params: Its parameters.
            session: Target session (flat mode), ``None`` for the browser.
            timeout: Seconds to wait.

        Returns:
            The result object.

        Raises:
            BrowserError: On a CDP error.
        """
        assert self._ws is not None
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_str(json.dumps(message))
        async with asyncio.timeout(timeout):
            answer = await future
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return dict(answer.get("result", {}))

    def listen(
        self, method: str, session: str | None, callback: Callable[[dict[str, Any]], None]
    ) -> Callable[[], None]:
        """Call ``callback(params)`` for each CDP event ``method``.

        Args:
            method: Event name.
            session: Only from this session (``None``: any).
            callback: The handler.

        Returns:
            A function that removes the listener.
        """
        entry = (method, session, callback)
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry) if entry in self._listeners else None

    async def new_page(self, width: int = 1280, height: int = 900) -> Page:
        """A tab in a fresh browser context (own cookies and storage).

        Args:
            width: Viewport width.
            height: Viewport height.

        Returns:
            The page, attached.
        """
        context = (await self.send("Target.createBrowserContext", {"disposeOnDetach": True}))[
            "browserContextId"
        ]
        target = (
            await self.send(
                "Target.createTarget", {"url": "about:blank", "browserContextId": context}
            )
        )["targetId"]
        session = (await self.send("Target.attachToTarget", {"targetId": target, "flatten": True}))[
            "sessionId"
        ]
        page = Page(self, str(session), str(target))
        await page.setup(width, height)
        self.pages.append(page)
        return page

    async def close(self) -> None:
        """Close the browser, stop its process group and remove the profile."""
        with contextlib.suppress(Exception):
            if self._ws is not None and not self._ws.closed:
                await self.send("Browser.close", timeout=5)
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._http is not None:
            await self._http.close()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # our own group, by id
                self.proc.wait()
            # Helpers (zygote, renderers) share the group; make sure none is left.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One attached tab.

    Attributes:
        errors: Console errors, uncaught exceptions and CSP reports seen so far.
    """

    def __init__(self, browser: Chromium, session: str, target: str) -> None:
        self.browser = browser
        self.session = session
        self.target = target
        self.errors: list[str] = []
        self._loads = 0

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A CDP command for this page."""
        return await self.browser.send(method, params, self.session)

    async def setup(self, width: int, height: int) -> None:
        """Enable the domains used and set the viewport."""

        def on_console(params: dict[str, Any]) -> None:
            if params.get("type") in ("error", "assert"):
                args = params.get("args", [])
                self.errors.append(
                    "console: "
                    + " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                )

        def on_exception(params: dict[str, Any]) -> None:
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append(f"exception: {text}")

        def on_log(params: dict[str, Any]) -> None:
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.errors.append(f"log: {entry.get('text', '')} {entry.get('url', '')}")

        def on_load(params: dict[str, Any]) -> None:
            self._loads += 1

        self.browser.listen("Runtime.consoleAPICalled", self.session, on_console)
        self.browser.listen("Runtime.exceptionThrown", self.session, on_exception)
        self.browser.listen("Log.entryAdded", self.session, on_log)
        self.browser.listen("Page.loadEventFired", self.session, on_load)
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    async def goto(self, url: str, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Navigate and wait for the load event.

        Args:
            url: Where to go.
            timeout: Seconds.

        Raises:
            BrowserError: On a navigation error.
        """
        loads = self._loads
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigate {url}: {result['errorText']}")
        await self.wait_until(lambda: self._loads > loads, timeout, f"load of {url}")

    async def wait_for_load(self, loads: int, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Wait until more than ``loads`` load events happened (after a click)."""
        await self.wait_until(lambda: self._loads > loads, timeout, "page load")

    @property
    def loads(self) -> int:
        """Load events seen so far."""
        return self._loads

    async def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        """Wait for a Python-side condition."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def eval(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited) and return the value.

        Args:
            expression: The expression.

        Returns:
            Its JSON value.

        Raises:
            BrowserError: If it threw.
        """
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(
                f"{expression[:80]}: "
                f"{details.get('exception', {}).get('description') or details.get('text')}"
            )
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0, interval: float = 0.02) -> Any:  # noqa: ASYNC109
        """Poll a JavaScript expression until it is truthy.

        Args:
            expression: The expression.
            timeout: Seconds.
            interval: Seconds between polls.

        Returns:
            Its (truthy) value.

        Raises:
            BrowserError: On timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout}s waiting for {expression}")
            await asyncio.sleep(interval)

    async def sign_in(self, login_url: str, agent: str, password: str) -> None:
        """Fill in and send pbxbridge's sign-in form (``#agent``, ``#password``, ``#sign-in``).

        Waits for the page the form leads to: whether that is the signed-in
        page or the form again with an error is for the caller to check.
        """
        await self.goto(login_url)
        await self.type("#agent", agent)
        await self.type("#password", password)
        loads = self._loads
        await self.click("#sign-in")
        await self.wait_for_load(loads)

    async def first_contentful_paints(self, url: str, loads: int) -> list[float]:
        """Load ``url`` ``loads`` times with the browser cache disabled.

        HTML, CSS, script and icon are fetched every time, as on a first visit.
        The cache is enabled again afterwards.

        Args:
            url: The page to load.
            loads: How many times.

        Returns:
            Each load's ``first-contentful-paint`` as the browser reports it:
            milliseconds from the start of the navigation.

        Raises:
            BrowserError: If a load or its paint entry takes longer than 10 s.
        """
        await self.send("Network.enable")
        await self.send("Network.setCacheDisabled", {"cacheDisabled": True})
        samples: list[float] = []
        for _ in range(loads):
            await self.goto(url)
            fcp = await self.wait_for(
                "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime",
                timeout=10,
            )
            samples.append(float(fcp))
        await self.send("Network.setCacheDisabled", {"cacheDisabled": False})
        return samples

    async def text(self, selector: str) -> str:
        """The text content of the first element matching ``selector`` (``""``: none)."""
        return str(
            await self.eval(
                f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"
            )
        )

    async def count(self, selector: str) -> int:
        """How many elements match."""
        return int(await self.eval(f"document.querySelectorAll({json.dumps(selector)}).length"))

    async def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element.

        Args:
            selector: CSS selector of the element.

        Raises:
            BrowserError: If it is missing or not visible.
        """
        box = await self.eval(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return null;
                el.scrollIntoView({{block: "center"}});
                const r = el.getBoundingClientRect();
                return r.width && r.height ? [r.left + r.width / 2, r.top + r.height / 2] : null;
            }})()"""
        )
        if not box:
            raise BrowserError(f"no visible element {selector}")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            )

    async def type(self, selector: str, text: str, clear: bool = True) -> None:
        """Focus an input and type text into it (real input events).

        Args:
            selector: CSS selector of the input.
            text: What to type.
            clear: Empty it first.
        """
        ok = await self.eval(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return false;
                el.focus();
                if ({"true" if clear else "false"}) {{ el.select && el.select(); }}
                return true;
            }})()"""
        )
        if not ok:
            raise BrowserError(f"no element {selector}")
        if clear:
            await self.send(
                "Input.dispatchKeyEvent",
                {"type": "keyDown", "key": "Delete", "code": "Delete", "windowsVirtualKeyCode": 46},
            )
            await self.send(
                "Input.dispatchKeyEvent",
                {"type": "keyUp", "key": "Delete", "code": "Delete", "windowsVirtualKeyCode": 46},
            )
        if text:
            await self.send("Input.insertText", {"text": text})

    async def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """Save a PNG of the page.

        Args:
            path: Where to write it (folders created).
            full_page: The whole document, not just the viewport.

        Returns:
            The path.
        """
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = await self.eval(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = await self.send("Page.captureScreenshot", params)
        png = base64.b64decode(data["data"])

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)

        await asyncio.to_thread(write)
        return path

    async def url(self) -> str:
        """The page's current URL."""
        return str(await self.eval("location.href"))
