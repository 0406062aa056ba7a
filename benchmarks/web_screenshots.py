"""Screenshots of the web reader on a real data dir, as its reader sees it.

    BRIEFCAST_DATA_DIR=/tmp/webshots/data .venv/bin/briefcast run --offline   # ~2.5 min: real MiniLM, spaCy
    .venv/bin/python -m benchmarks.web_screenshots /tmp/webshots/data docs            # the docs' PNGs
    .venv/bin/python -m benchmarks.web_screenshots /tmp/webshots/data /tmp/shots --all  # every page, for review

The data dir is copied to a temporary directory first (its SQLite database and index), and the
copy gets an API key to sign in with and, when it has no subscriber, one for the subscription
page; the data dir itself is never written. `briefcast serve`'s app runs under uvicorn on
loopback against the copy, and Debian's chromium (/usr/bin/chromium, through Playwright's
executable_path, the browser test's flags) opens each page at 375 and 1200 px, light and dark.

--axe also runs axe-core (the browser test's copy) on every page and prints its violations.
By default it writes the screenshots docs/web.md shows, each cut to its first screens
(--max-height CSS pixels) and reduced to a 128-colour palette to stay small. --all writes
every page at both widths in both schemes, full length, for a person to look at.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.serve_process import UvicornApp  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]  # as tests/test_web_browser.py
WIDTHS = {375: 812, 1200: 900}
SCHEMES = ("light", "dark")
# The docs' screenshots: (page, width, scheme). Names match what docs/web.md links.
DOCS_SET = [("brief", 375, "light"), ("brief", 1200, "dark"), ("story", 1200, "light"), ("story", 375, "dark"),
            ("find", 1200, "light"), ("find-zh", 375, "light"), ("podcasts", 1200, "dark"),
            ("subscription", 375, "light")]


@dataclass
class Copy:
    data_dir: Path
    db_url: str


def start_server(copy: Copy) -> UvicornApp:
    """The real encoders (unlike the tests' fake one) and this environment's other BRIEFCAST_*
    settings (the config the run used)."""
    env = dict(os.environ, BRIEFCAST_DATA_DIR=str(copy.data_dir), BRIEFCAST_DATABASE_URL=copy.db_url,
               BRIEFCAST_WEB_PUBLIC="false")
    try:
        return UvicornApp(env, copy.data_dir, start_seconds=120)
    except AssertionError as error:
        raise SystemExit(f"uvicorn did not start: {error}") from None


def copy_data_dir(source: Path, target: Path) -> Copy:
    """Index files as they are; the SQLite database through its backup API (a consistent copy)."""
    if not (source / "briefcast.db").exists():
        raise SystemExit(f"{source} holds no briefcast.db: make one with `briefcast run --offline`")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("briefcast.db*", "*.lock", "uvicorn-*.log"))
    with sqlite3.connect(source / "briefcast.db") as src, sqlite3.connect(target / "briefcast.db") as dst:
        src.backup(dst)
    return Copy(data_dir=target, db_url=f"sqlite:///{target / 'briefcast.db'}")


def prepare(copy: Copy) -> dict:
    """An API key, a subscriber, and the pages to open (from the newest brief of the web topic)."""
    from sqlalchemy import select

    from api.web.briefs_data import front_brief, load_brief
    from digest.manage_links import manage_token
    from digest.subscribers import add_subscriber
    from store.apikeys import create_key
    from store.db import open_database
    from store.models import Subscriber
    from store.settings import Settings

    settings = Settings(data_dir=copy.data_dir, database_url=copy.db_url)
    sessions = open_database(copy.db_url)
    with sessions() as session, session.begin():
        _row, key = create_key(session, "web screenshots")
        subscriber = session.scalars(select(Subscriber).order_by(Subscriber.id)).first()
        existing = (subscriber.id, subscriber.unsubscribe_token) if subscriber else None
    if existing is None:
        view, _ = add_subscriber(sessions, "reader@example.org", topics=[settings.web_topic], timezone="Europe/Paris")
        existing = (view.id, view.unsubscribe_token)
    found = front_brief(settings, sessions)
    if found is None:
        raise SystemExit("no brief in this data dir: `briefcast run --offline` builds one")
    brief = load_brief(sessions, *found)
    lead = brief.lead.story_id if brief.lead else brief.cards[0].story_id
    other = next((c.story_id for c in brief.cards if c.story_id != lead), lead)
    paths = {"brief": "/", "story": f"/stories/{lead}", "story-2": f"/stories/{other}", "insight": f"/insights/{other}",
             "podcasts": f"/podcasts/{brief.topic}/{brief.day}", "find": "/find?q=export+controls",
             "find-zh": "/find?q=%E8%8A%AF%E7%89%87", "briefs": "/briefs",
             "subscription": f"/subscription/{manage_token(*existing)}", "signin": "/signin"}
    return {"key": key, "paths": paths, "day": brief.day}


def shoot(base_url: str, key: str, paths: dict, shots: list[tuple[str, int, str]], out: Path,
          max_height: int | None, axe: bool = False) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        for width, scheme in sorted({(w, s) for _, w, s in shots}):
            context = browser.new_context(viewport={"width": width, "height": WIDTHS[width]}, color_scheme=scheme,
                                          base_url=base_url, is_mobile=width < 600, has_touch=width < 600,
                                          bypass_csp=axe)  # axe goes in as an inline script
            page = context.new_page()
            _sign_in(page, key)
            names = [n for n, w, s in shots if (w, s) == (width, scheme)]
            for name in sorted(names, key=lambda n: n in ("signin", "subscription")):
                if name in ("signin", "subscription"):  # a subscriber opens theirs from an email, not signed in
                    context.clear_cookies()
                page.goto(paths[name])
                page.wait_for_load_state()
                target = out / f"web-{name}-{width}-{scheme}.png"
                _capture(page, target, width, max_height)
                written.append(target)
                if axe:
                    print(f"axe {name} {width} {scheme}: {_axe(page) or 'no violations'}")
            context.close()
        browser.close()
    return written


def _axe(page) -> dict[str, int]:
    """axe-core's violations on the page, as {impact: nodes} (the browser test's harness)."""
    from axe_playwright_python.base import AXE_FILE_PATH

    page.add_script_tag(path=str(AXE_FILE_PATH))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    counts: dict[str, int] = {}
    for violation in result["violations"]:
        counts[f"{violation['impact']} {violation['id']}"] = len(violation["nodes"])
    return counts


def _sign_in(page, key: str) -> None:
    page.goto("/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")
    page.wait_for_load_state()


def _capture(page, target: Path, width: int, max_height: int | None) -> None:
    height = page.evaluate("() => document.documentElement.scrollHeight")
    if max_height and height > max_height:
        page.screenshot(path=str(target), clip={"x": 0, "y": 0, "width": width, "height": max_height}, full_page=True)
    else:
        page.screenshot(path=str(target), full_page=True)


def shrink(path: Path) -> None:
    """A 128-colour palette: text screenshots stay sharp at a third of the size."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def _has_cjk_font() -> bool:
    try:
        found = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(found.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="a data dir made by `briefcast run` (SQLite)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--all", action="store_true", help="every page, both widths and schemes, full length")
    parser.add_argument("--axe", action="store_true", help="also run axe-core on each page and print its violations")
    parser.add_argument("--max-height", type=int, default=1200, help="CSS pixels kept of a long page (docs set)")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not _has_cjk_font():
        print("warning: no CJK font (fc-list :lang=zh): Chinese text shows as boxes; "
              "apt-get install fonts-wqy-microhei", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="webshots-") as tmp:
        copy = copy_data_dir(args.data_dir.resolve(), Path(tmp) / "data")
        world = prepare(copy)
        names = list(world["paths"])
        shots = [(n, w, s) for n in names for w in WIDTHS for s in SCHEMES] if args.all else DOCS_SET
        server = start_server(copy)
        try:
            written = shoot(server.base_url, world["key"], world["paths"], shots, args.out_dir,
                            None if args.all else args.max_height, axe=args.axe)
        finally:
            server.stop()
    for path in written:
        if not args.all:
            shrink(path)
        print(f"{path}  {path.stat().st_size / 1024:.0f} KB")
    print(f"brief of {world['day']}; pages: " + ", ".join(f"{k} {v}" for k, v in world["paths"].items()))


if __name__ == "__main__":
    main()
