"""Extracted article text is in Unicode NFC, as trafilatura's own `extract` returns it (issue 11).

A page written in decomposed form (NFD: "e" + U+0301 rather than "é", as macOS file names and
some CMSs produce) must be stored composed, so that a search for "café" typed on any keyboard, the
keyword index and the content hash all see the same characters whichever form the page used.
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import select

from ingest.content import extract_article
from ingest.localserver import LocalServer
from ingest.refresh import refresh
from store import repo
from store.models import Item

WORDS = ("Café", "résumé", "naïve", "Zürich", "São Paulo", "Ångström", "Việt Nam", "Dvořák")
PARAGRAPH = ("The {0} correspondent filed again today: export controls on accelerators reshape how "
             "labs plan their training runs, and the budget for compute moves with them.")


def nfd_page(title: str) -> str:
    body = "".join(f"<p>{PARAGRAPH.format(word)}</p>" for word in WORDS * 3)
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
            f"<body><header><nav><a href=\"/\">Home</a></nav></header><article><h1>{title}</h1>{body}</article>"
            "<footer>© 2025</footer></body></html>")
    return unicodedata.normalize("NFD", page)


def test_extracted_text_of_a_decomposed_page_is_composed():
    page = nfd_page("Café society in Zürich")
    assert not unicodedata.is_normalized("NFC", page)
    extracted = extract_article(page.encode("utf-8"), "http://example.com/cafe")
    assert extracted is not None
    for field in (extracted.text, extracted.title):
        assert unicodedata.is_normalized("NFC", field), field[:200]
    assert "Café" in extracted.text and "Dvořák" in extracted.text and extracted.title == "Café society in Zürich"


def test_a_teaser_filled_from_a_decomposed_page_is_stored_composed(tmp_path, settings, sessions):
    site = tmp_path / "site"
    (site / "a").mkdir(parents=True)
    (site / "a" / "cafe.html").write_bytes(nfd_page("Café society in Zürich").encode("utf-8"))
    (site / "feed.rss").write_text(
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>World</title>'
        "<item><title>Café society in Zürich</title><link>{{BASE_URL}}/a/cafe.html</link><guid>cafe</guid>"
        "<description>The correspondent filed again…</description></item></channel></rss>", encoding="utf-8")
    with LocalServer(site) as server:
        with sessions() as session, session.begin():
            repo.add_source(session, server.url("/feed.rss"))
        report = refresh(settings, sessions)
    assert report.new_items == 1, report.as_json()
    with sessions() as session:
        item = session.scalars(select(Item)).one()
    assert item.text_source == "extracted"
    assert unicodedata.is_normalized("NFC", item.text) and "São Paulo" in item.text and "Ångström" in item.text
