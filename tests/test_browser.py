"""The email's HTML in a real browser (Debian's headless Chromium): on a 375 px phone viewport the
screenshot is not blank, light and dark, and the layout is no wider than the viewport.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: NUL-separated
JSON on fds 3 and 4), so no websocket client is needed. Plain `--dump-dom --window-size=375,...`
cannot measure this: headless windows are at least 500 px wide, while device-metrics emulation
gives a true 375 px mobile viewport (which also honours the meta viewport).
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from digest.render import render_brief
from tests.email_helpers import sample_brief

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (`make install` adds it when run as root: apt-get install chromium)",
)
PHONE = 375
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
HANG = 120.0  # seconds before a silent browser is declared hung (a guard, not a measurement)


class Browser:
    """Just enough of the DevTools protocol: open a page in an emulated phone, evaluate, screenshot."""

    def __init__(self, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds() -> None:  # Chromium reads commands on fd 3 and writes replies on fd 4
            # Move both out of the way first: a pipe may itself be fd 3 or 4 (and non-inheritable).
            high_r, high_w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=wire_fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._next_id, self.session = b"", 0, None

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
        except Exception:  # noqa: BLE001 - it may be gone already
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_chrome)
        os.close(self._from_chrome)

    def call(self, method: str, session: bool = True, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_for(self, event: str) -> dict:
        while True:
            message = self._read()
            if message.get("method") == event:
                return message.get("params", {})

    def _read(self) -> dict:
        deadline = time.monotonic() + HANG
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._from_chrome, 1 << 20) if ready else b""
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe or stopped answering")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def open_phone(self, url: str, scheme: str = "light") -> None:
        target = self.call("Target.createTarget", session=False, url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", session=False, targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=PHONE, height=800, deviceScaleFactor=1, mobile=True)
        self.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": scheme}])
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]["value"]

    def screenshot(self, height: int = 2000):
        from PIL import Image

        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": PHONE, "height": height, "scale": 1})["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


@pytest.fixture(scope="module")
def email_page(tmp_path_factory) -> Path:
    page = tmp_path_factory.mktemp("email") / "brief.html"
    page.write_text(render_brief(sample_brief(), unsubscribe_url="https://briefs.example/unsubscribe/tok").html,
                    encoding="utf-8")
    return page


def luminance(pixel) -> float:
    r, g, b = pixel
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def assert_not_blank(image, name: str) -> None:
    from PIL import ImageStat

    grey = image.convert("L")
    spread = ImageStat.Stat(grey).stddev[0]
    levels = sum(1 for count in grey.histogram() if count)
    assert spread > 15 and levels > 50, f"{name} screenshot looks blank: stddev {spread:.1f}, {levels} grey levels"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_screenshot_is_not_blank(browser, email_page, tmp_path, scheme):
    browser.open_phone(email_page.as_uri(), scheme)
    image = browser.screenshot()
    image.save(tmp_path / f"{scheme}.png")  # to look at: pytest --basetemp=DIR
    assert image.size == (PHONE, 2000)
    assert_not_blank(image, scheme)
    corner = luminance(image.getpixel((2, 2)))
    if scheme == "light":
        assert corner > 200, f"the light page background is dark ({corner:.0f})"
    else:
        assert corner < 60, f"prefers-color-scheme: dark did not apply ({corner:.0f})"


def test_layout_fits_a_375_px_viewport(browser, email_page, tmp_path):
    browser.open_phone(email_page.as_uri())
    assert browser.evaluate("window.innerWidth") == PHONE
    width = browser.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE, f"the email is {width}px wide in a {PHONE}px viewport: it scrolls sideways"
    assert browser.evaluate("document.documentElement.scrollHeight") > 2000  # the whole brief, not an empty page
    smallest = browser.evaluate(
        "Math.min(...[...document.querySelectorAll('p, li, dd, a, h3')]"
        ".map(e => parseFloat(getComputedStyle(e).fontSize)))")
    assert smallest >= 14

    # The measurement can fail: a fixed 600 px table (a common email layout) overflows.
    fixed = tmp_path / "fixed.html"
    wide = '<table width="600" style="width:600px"><tr><td>x</td></tr></table>'
    fixed.write_text(re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + wide, email_page.read_text(), count=1))
    browser.open_phone(fixed.as_uri())
    assert browser.evaluate("document.documentElement.scrollWidth") > PHONE


ARTIFACTS = os.environ.get("BRIEFCAST_TEST_ARTIFACTS")  # where screenshots are kept to look at (docs/ uses them)
FIRST_SCREEN = 740  # px: a phone's first screen at 375 px wide


@pytest.mark.slow
def test_the_sample_world_brief_as_its_reader_first_sees_it(browser, real_sample_brief, tmp_path):
    page = tmp_path / "brief.html"
    page.write_text(render_brief(real_sample_brief).html, encoding="utf-8")
    browser.open_phone(page.as_uri())
    lines_top = browser.evaluate("[...document.querySelectorAll('h2')].find(h => h.textContent.startsWith('Today in'))"
                                 ".getBoundingClientRect().top")
    assert lines_top < FIRST_SCREEN / 3  # "Today in five lines" is the first thing under the masthead
    first_card = browser.evaluate("document.getElementById('story-%d').getBoundingClientRect().top"
                                  % real_sample_brief.cards[0].story_id)
    assert first_card > lines_top
    assert browser.evaluate("document.querySelector('.preheader').getBoundingClientRect().height") == 0
    assert browser.evaluate("document.documentElement.scrollWidth") <= PHONE
    image = browser.screenshot(height=FIRST_SCREEN)
    assert_not_blank(image, "first screen")
    for folder in filter(None, (tmp_path, ARTIFACTS and Path(ARTIFACTS))):
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / "brief-first-screen-375.png")
