"""The report in a real browser: headless Chromium loads it from disk, with no network.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages
separated by NUL bytes on file descriptors 3 and 4), so no Python package beyond the standard
library is needed. The test collects console messages, uncaught exceptions and failed loads, checks
every section and plot is in the rendered DOM, and saves a full-page screenshot to
tests/artifacts/report.png.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from medallion_lakehouse.lake import Lake
from medallion_lakehouse.report.step import SECTIONS, write_report

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def chromium_path() -> str | None:
    env = os.environ.get("MEDALLION_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None)


@dataclass
class PageProblems:
    """Everything the page reported that a clean page does not."""

    console: list[str] = field(default_factory=list)  # console.* calls of any level
    exceptions: list[str] = field(default_factory=list)  # uncaught JavaScript errors
    log_errors: list[str] = field(default_factory=list)  # failed loads, security errors, ...
    requests: list[str] = field(default_factory=list)  # every URL the page asked for

    def all(self) -> list[str]:
        return self.console + self.exceptions + self.log_errors


class Browser:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_fds() -> None:  # in the child: commands on fd 3, replies on fd 4
            high_r, high_w = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds,  # the test process is single-threaded
            close_fds=True,
            pass_fds=(3, 4),  # the dup2 targets above; close_fds closes everything else
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may already be gone
            self.send("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], remaining)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self._to_child, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("method") == method:
                return message
            self.events.append(message)


@dataclass
class LoadedPage:
    sections: list[str]
    plots: list[str]
    placeholders: int
    svg_count: int
    external: list[str]
    problems: PageProblems
    screenshot: bytes


JS_INSPECT = """JSON.stringify({
  sections: [...document.querySelectorAll('section[id^="section-"]')].map(s => s.id),
  plots: [...document.querySelectorAll('[data-plot]')]
    .filter(f => f.querySelector('svg') && f.getBoundingClientRect().height > 20)
    .map(f => f.dataset.plot),
  placeholders: document.querySelectorAll('[data-empty="true"]').length,
  svg_count: document.querySelectorAll('svg').length,
  external: [...document.querySelectorAll('[src],[href]')]
    .map(e => e.getAttribute('src') || e.getAttribute('href'))
    .filter(u => !u.startsWith('#') && !u.startsWith('data:')),
})"""


def load(binary: str, html: Path, profile: Path, *, width: int = 1400) -> LoadedPage:
    """Open `html` from disk, let it settle, inspect it and take a full-page screenshot."""
    browser = Browser(binary, profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.send("Page.navigate", {"url": html.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        inspected = json.loads(
            browser.send(
                "Runtime.evaluate",
                {"expression": JS_INSPECT, "returnByValue": True},
                session=session,
            )["result"]["value"]
        )
        metrics = browser.send("Page.getLayoutMetrics", session=session)
        size = metrics["cssContentSize"]
        shot = browser.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
            },
            session=session,
            timeout=60,
        )
        problems = PageProblems()
        for event in browser.events:
            params = event.get("params", {})
            method = event.get("method")
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                problems.console.append(f"console.{params['type']}: {text}")
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                problems.exceptions.append(
                    details.get("exception", {}).get("description") or details.get("text", "")
                )
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                problems.log_errors.append(
                    f"{entry['source']}: {entry['text']} {entry.get('url', '')}"
                )
            elif method == "Network.requestWillBeSent":
                problems.requests.append(params["request"]["url"])
            elif method == "Network.loadingFailed":
                problems.log_errors.append(f"network: {params.get('errorText')}")
        return LoadedPage(
            sections=inspected["sections"],
            plots=inspected["plots"],
            placeholders=inspected["placeholders"],
            svg_count=inspected["svg_count"],
            external=inspected["external"],
            problems=problems,
            screenshot=base64.b64decode(shot["data"]),
        )
    finally:
        browser.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium not installed: run scripts/setup_browser.sh")
    return path


# -- the detector itself must be able to fail ---------------------------------------------------
def test_detects_console_errors_exceptions_and_failed_loads(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><section id='section-x'></section>"
        "<img src='missing.png'>"
        "<script>console.error('boom'); throw new Error('uncaught');</script></body></html>",
        encoding="utf-8",
    )
    loaded = load(chromium, page, tmp_path / "profile")
    assert any("boom" in m for m in loaded.problems.console)
    assert any("uncaught" in m for m in loaded.problems.exceptions)
    assert any("missing.png" in m or "ERR_FILE_NOT_FOUND" in m for m in loaded.problems.log_errors)
    assert loaded.external == ["missing.png"]
    assert loaded.sections == ["section-x"]


# -- the report ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    from tests.test_report import build_full_lake

    with build_full_lake(tmp_path_factory.mktemp("browser-ws")) as lake:
        yield lake


def test_full_report_renders_every_section_and_plot_cleanly(
    chromium: str, full_lake: Lake, tmp_path: Path
) -> None:
    output = write_report(full_lake)
    assert output.errors == {}
    loaded = load(chromium, Path(output.path), tmp_path / "profile")

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(loaded.screenshot)

    assert loaded.problems.all() == []
    assert loaded.external == []  # nothing but in-page anchors and data: URIs
    assert all(u.startswith(("file:", "data:")) for u in loaded.problems.requests)
    assert loaded.sections == [f"section-{sid}" for sid, _, _ in SECTIONS]
    expected_plots = {
        "lineage",
        "funnel",
        "quarantine-reasons",
        "quality",
        "daily-revenue",
        "revenue-by-product",
        "revenue-by-store",
        "late-arrivals",
        "run-durations",
        "churn-roc",
        "churn-pr",
        "explore-nulls",
        "explore-store-shapes",
        "explore-totals",
    }
    assert set(loaded.plots) == expected_plots
    assert loaded.placeholders == 0
    assert loaded.screenshot[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_workspace_report_shows_placeholders_without_errors(
    chromium: str, tmp_path: Path
) -> None:
    from medallion_lakehouse.config import load_settings

    with Lake(load_settings(tmp_path / "empty")) as lake:
        output = write_report(lake)
    loaded = load(chromium, Path(output.path), tmp_path / "profile")
    assert loaded.problems.all() == []
    assert loaded.sections == [f"section-{sid}" for sid, _, _ in SECTIONS]
    assert loaded.placeholders == len(SECTIONS)
    assert loaded.plots == []
