"""The web reader in a real browser: Debian's chromium driven by Playwright (executable_path: no
browser is downloaded) against uvicorn on loopback and the sample world with a hostile feed.

Flows: sign in, open today's brief, follow a card to its story, search and open a hit, manage a
subscription. Every page at 375 px and 1200 px, light and dark: a full-page screenshot kept as a
test artifact (BRIEFCAST_TEST_ARTIFACTS, else pytest's tmp dir), nothing wider than the viewport,
no dialog ever opened by a feed's script, and axe-core's violations by impact (0 serious or critical).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.web_world import HOSTILE_MARK, web_server, web_world  # noqa: F401 - fixtures

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (`make install` adds it when run as root: apt-get install chromium)",
)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
WIDTHS = {"phone": (375, 812), "desktop": (1200, 900)}
SCHEMES = ("light", "dark")
ARTIFACTS_ENV = os.environ.get("BRIEFCAST_TEST_ARTIFACTS")  # read at import: the autouse fixture clears BRIEFCAST_*
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    path = Path(ARTIFACTS_ENV) / "web" if ARTIFACTS_ENV else tmp_path_factory.mktemp("web-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def chromium():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def new_page(chromium, web_server, width="desktop", scheme="light", **options):
    w, h = WIDTHS[width]
    context = chromium.new_context(viewport={"width": w, "height": h}, color_scheme=scheme,
                                   base_url=web_server.base_url, is_mobile=width == "phone",
                                   has_touch=width == "phone", **options)
    page = context.new_page()
    page.dialogs = []  # a feed's script that ran would open one
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    return page


def sign_in(page, key: str, path: str = "/") -> None:
    page.goto(path)
    assert "/signin" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")
    page.wait_for_load_state()


def no_unsafe_markup(page) -> None:
    found = page.evaluate("""() => ({
        scripts: document.scripts.length,
        js_links: [...document.querySelectorAll('[href],[src],[action]')]
            .map(e => e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('action'))
            .filter(u => /^\\s*(javascript|data|vbscript):/i.test(u)),
        handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))
            .filter(n => n.startsWith('on')),
    })""")
    assert found == {"scripts": 0, "js_links": [], "handlers": []}, found
    assert page.dialogs == []


def test_sign_in_read_the_brief_follow_a_card_search_and_open_a_hit(chromium, web_server, web_world, artifacts):
    page = new_page(chromium, web_server)
    sign_in(page, web_world.api_key)
    assert page.url == web_server.base_url + "/"
    assert page.get_by_role("heading", level=1).inner_text() == "Top 5 insights"
    headings = page.locator("main h2").all_inner_texts()
    assert headings[0] == "Today in 5 lines"  # first, before the cards
    no_unsafe_markup(page)

    first_card = page.locator("article.card").first
    title = first_card.locator("h2 a").inner_text()
    first_card.locator("h2 a").click()
    page.wait_for_load_state()
    assert "/stories/" in page.url and page.get_by_role("heading", level=1).inner_text() == title
    assert page.get_by_role("heading", name="Why it ranked").is_visible()
    assert page.get_by_role("heading", name="Sources").is_visible()
    page.locator("a.cite").first.click()  # [n] jumps to its source
    assert "#source-" in page.url
    no_unsafe_markup(page)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Find").click()
    page.get_by_label("Search articles, episodes and posts").fill(HOSTILE_MARK)
    assert not page.get_by_label("Kind").is_visible()  # folded until asked for: results come first
    page.get_by_text("Filters", exact=True).click()
    page.get_by_label("Kind").select_option("article")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    assert f"q={HOSTILE_MARK}" in page.url and "kind=article" in page.url
    hits = page.locator("li.hit")
    assert hits.count() >= 1 and HOSTILE_MARK in hits.first.inner_text()
    no_unsafe_markup(page)
    page.get_by_label("Search articles, episodes and posts").fill("memory bandwidth export rule")
    page.get_by_label("Kind").select_option("")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    hit_link = page.locator("li.hit h3 a").first
    target = hit_link.get_attribute("href")
    assert target.startswith("http://127.0.0.1:")  # the sample site on loopback
    hit_link.click()
    page.wait_for_load_state()
    assert page.url.split("#")[0] == target.split("#")[0]
    page.context.close()


def test_manage_a_subscription_from_the_emails_link(chromium, web_server, web_world):
    from store.models import Subscriber

    page = new_page(chromium, web_server, width="phone")
    page.goto(f"/subscription/{web_world.manage_link}")
    assert page.get_by_role("heading", level=1).inner_text() == "Your subscription"
    page.get_by_label("Written for").select_option("Director of AI/ML")
    page.get_by_label("Time zone").fill("America/New_York")
    page.get_by_label("Send time").fill("07:15")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text().startswith("Saved")
    with web_world.sessions() as session:
        row = session.get(Subscriber, web_world.subscriber_id)
        assert (row.persona, row.timezone, row.send_time) == ("Director of AI/ML", "America/New_York", "07:15")
    page.get_by_label("Time zone").fill("Not/AZone")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert "unknown time zone" in page.get_by_role("alert").inner_text()
    page.context.close()


def test_the_keyboard_reaches_the_content_first(chromium, web_server, web_world):
    page = new_page(chromium, web_server)
    sign_in(page, web_world.api_key)
    page.keyboard.press("Tab")
    focused = page.evaluate("() => [document.activeElement.textContent, getComputedStyle(document.activeElement).outlineStyle]")
    assert focused == ["Skip to content", "solid"]  # the first stop, and focus is visible
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # the next stop is inside the brief, not the header again
    assert page.evaluate("() => document.activeElement.closest('main') !== null")
    page.context.close()


def pages(world) -> dict[str, str]:
    return {"brief": "/", "story": f"/stories/{world.story_ids[0]}", "insight": f"/insights/{world.story_ids[1]}",
            "podcasts": f"/podcasts/{world.topic}/{world.day}", "find": "/find?q=open+weight+models",
            "briefs": "/briefs", "subscription": f"/subscription/{world.manage_link}", "signin": "/signin"}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_page_fits_is_themed_and_passes_axe(chromium, web_server, web_world, artifacts, width, scheme):
    from axe_playwright_python.base import AXE_FILE_PATH

    # bypass_csp: the app forbids inline script, which is how axe gets into the page
    page = new_page(chromium, web_server, width=width, scheme=scheme, bypass_csp=True)
    sign_in(page, web_world.api_key)
    report, blocking = {}, []
    for name, path in pages(web_world).items():
        if name == "signin":
            page.context.clear_cookies()
        page.goto(path)
        page.wait_for_load_state()
        page.screenshot(path=str(artifacts / f"web-{name}-{WIDTHS[width][0]}-{scheme}.png"), full_page=True)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} at {width}: {overflow} px wider than the viewport"
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        dark = _luminance(background) < 80
        assert dark == (scheme == "dark"), (name, scheme, background)
        page.add_script_tag(path=str(AXE_FILE_PATH))
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        found = [{"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "help": v["help"],
                  "targets": [n["target"] for n in v["nodes"][:3]]} for v in result["violations"]]
        report[name] = found
        blocking += [(name, v["id"], v["targets"]) for v in found if v["impact"] in BLOCKING]
    (artifacts / f"axe-{width}-{scheme}.json").write_text(json.dumps(report, indent=2))
    counts = {}
    for found in report.values():
        for v in found:
            counts[v["impact"]] = counts.get(v["impact"], 0) + v["nodes"]
    print(f"axe {width} {scheme}: violations by impact (nodes) {counts or 'none'}")
    assert not blocking, blocking
    page.context.close()


def _luminance(css_rgb: str) -> float:
    r, g, b = (float(x) for x in css_rgb[css_rgb.index("(") + 1:css_rgb.index(")")].split(",")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_the_axe_check_does_find_violations(chromium, web_server):
    """The harness can fail: a page with an unlabeled field and an image without alt text."""
    from axe_playwright_python.base import AXE_FILE_PATH

    page = new_page(chromium, web_server, bypass_csp=True)
    page.set_content('<!DOCTYPE html><html><body><img src="x.png"><input type="text"></body></html>')
    page.add_script_tag(path=str(AXE_FILE_PATH))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    found = {v["id"]: v["impact"] for v in result["violations"]}
    assert found.get("image-alt") == "critical" and found.get("label") == "critical", found
    page.context.close()
