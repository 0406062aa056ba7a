"""The email brief's HTML and text parts: every field of the seeds, sanitised feed text, phone and dark-mode rules."""

from __future__ import annotations

import json
import re

import pytest

from digest.render import clean_text, lead_view, render_brief, safe_url, select_cards, timestamp_url
from digest.summary.schema import DailyBrief, from_dict
from tests.email_helpers import card, sample_brief

UNSUB = "https://briefs.example/unsubscribe/tok123"
PASSAGES = {501: 1001, 502: 1002, 503: 1002}


@pytest.fixture(scope="module")
def rendered():
    return render_brief(sample_brief(), unsubscribe_url=UNSUB)


@pytest.mark.parametrize("raw, plain", [
    ('a <script>alert("x")</script> b', "a b"),
    ('<img src=x onerror="alert(1)">hi', "hi"),
    ("&lt;script&gt;alert(1)&lt;/script&gt;ok", "ok"),  # double-escaped markup goes too
    ("Tom &amp; Jerry <b>bold</b>", "Tom & Jerry bold"),
    ("x < y and y > z", "x < y and y > z"),
    (None, ""),
])
def test_clean_text_leaves_plain_text_only(raw, plain):
    assert clean_text(raw) == plain


@pytest.mark.parametrize("url, ok", [
    ("https://a.example/x?y=1", True), ("http://a.example", True), ("javascript:alert(1)", False),
    ("JaVaScRiPt:alert(1)", False), ("data:text/html,<script>", False), ("//a.example/x", False),
    ("java\nscript:alert(1)", False), ("", False), (None, False),
])
def test_only_http_links_survive(url, ok):
    assert (safe_url(url) is not None) is ok


def test_timestamp_links_open_the_episode_at_the_passage():
    assert timestamp_url("https://pod.example/ep.mp3", 125.7) == "https://pod.example/ep.mp3#t=125"
    assert timestamp_url("https://www.youtube.com/watch?v=abc&t=5", 3725) == "https://www.youtube.com/watch?v=abc&t=3725s"
    assert timestamp_url("https://pod.example/ep#chapter-2", 60) == "https://pod.example/ep#chapter-2"  # its own fragment
    assert timestamp_url("https://pod.example/ep", None) == "https://pod.example/ep"
    assert timestamp_url("javascript:alert(1)", 10) is None


def test_no_markup_from_feeds_reaches_either_part(rendered):
    for part in (rendered.html, rendered.text):
        assert "<script" not in part.lower()
        assert "onerror" not in part.lower()
        assert "javascript:" not in part.lower()
        assert "alert(" not in part
    # the text around the hostile markup is kept
    assert "Beijing answered the export rules within a day. Labs moved training to domestic chips" in rendered.html
    assert "<img" not in rendered.html


def test_top_five_cards_with_every_seed_field(rendered):
    html, text = rendered.html, rendered.text
    for n in range(1, 6):
        assert f"{n}. " in text
    assert "Story number 6" not in html and "Story number 6" not in text
    for label in ("Summary", "Key takeaway", "Key insights", "Principles", "In practice",
                  "Topics:", "Best for:", "Sources", "Also covering it", "Related insights from podcasts"):
        assert label in html, label
        assert label.upper() in text.upper(), label
    assert "Key takeaway for" not in html  # general cards carry no persona label
    assert "Original article published by Policy Wire." in html
    assert "3 min read" in html
    assert "Export controls · Open-weight models" in text
    # every source item is linked (the javascript: one stays plain text), under its publisher's name
    hrefs = set(re.findall(r'href="([^"]+)"', html))
    for url in ("https://news.example/1001", "https://news.example/3001", "https://pod.example/ep1.mp3#t=754",
                "https://news.example/1003"):
        assert url in hrefs
    link = re.search(r'<a [^>]*href="https://news.example/1001"[^>]*>([^<]*)</a>', html)
    assert link.group(1) == "Policy Wire" and 'title="Article 1 on chips"' in link.group(0)
    assert "Article 2 on chips" not in text  # the text part lists publishers and links, not full titles


def test_the_email_opens_with_a_preheader_and_today_in_five_lines(rendered):
    html, text = rendered.html, rendered.text
    body = html[html.index("<body"):]
    preheader = re.search(r'<div class="preheader"[^>]*>([^<]*)</div>', body)
    assert preheader and body.index("preheader") < body.index("Today in 5 lines")
    assert preheader.group(1).startswith("Beijing answers the new chip rules · Story number 2")
    lines = body[body.index("Today in 5 lines"):body.index('id="story-101"')]
    assert len(re.findall(r'<li[^>]*><a [^>]*href="#story-1\d\d"', lines)) == 5
    assert "TODAY IN 5 LINES" in text and text.index("TODAY IN 5 LINES") < text.index("SUMMARY")


def test_the_email_leaves_the_story_brief_to_the_story_page(rendered):
    assert "Editorial perspective" not in rendered.html and "STORY BRIEF" not in rendered.text


def test_story_brief_has_numbered_citations_glossary_and_label():
    lead = lead_view(sample_brief().lead, PASSAGES)
    assert lead.label == "Editorial perspective - synthesised analysis, not factual reporting."
    plain = [" ".join(s.plain for s in para) for para in lead.paragraphs]
    assert "benchmarks [1]." in plain[0] and "efficient training [2]." in plain[0]
    assert plain[1] == "European buyers weigh hosting them locally [2]."  # a [2] it wrote itself is kept once
    assert lead.paragraphs[0][0].citations == [(1, "https://news.example/1001")]
    assert lead.glossary == [("Distillation", "Training a small model on a larger model's outputs.")]


def test_podcast_brief_links_to_the_moment(rendered):
    html = rendered.html
    assert 'href="https://pod.example/ep41#t=125"' in html
    assert "at 2:05" in html
    assert 'href="https://youtube.com/watch?v=abc&amp;t=3725s"' in html  # escaped in an attribute, as it must be
    assert "at 1:02:05" in html
    assert "Related insights" in html
    # under its story's card, once; the podcast section has only what no card carries
    assert html.count("commoditise the model layer") == 1 and rendered.text.count("commoditise the model layer") == 1
    section = html[html.index("More from the podcasts"):]
    assert "Sovereign compute budgets" in section and "commoditise" not in section
    assert 'href="https://pod.example/cw10#t=61"' in section


def test_unverified_claims_are_labelled_and_unsubscribe_is_linked(rendered):
    assert "Unverified: only social posts carry these claims" in rendered.html
    assert "Shenzhen" in rendered.text.split("UNVERIFIED")[1]
    assert f'href="{UNSUB}"' in rendered.html
    assert f"Unsubscribe: {UNSUB}" in rendered.text
    assert "Tuesday 1 December 2026" in rendered.html and rendered.subject.startswith("AI geopolitics brief, Tuesday")


def test_json_round_trips(rendered):
    again = from_dict(DailyBrief, json.loads(rendered.json))
    assert again == sample_brief()


def test_css_is_inlined_and_dark_mode_safe(rendered):
    html = rendered.html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "color-scheme: light dark" in html
    assert "@media (prefers-color-scheme: dark)" in html  # kept for the clients that honour it
    styles = re.findall(r'style="([^"]*)"', html)
    assert len(styles) > 50  # inlined
    for style in styles:
        props = dict(p.split(":", 1) for p in style.replace(" ", "").split(";") if ":" in p)
        if "color" in props:
            assert "background-color" in props, f"text colour without its background: {style}"
        size = props.get("font-size")
        if size:
            assert size.endswith("px") and float(size[:-2]) >= 14, style
    assert "max-width: 600px" in html


def test_a_readers_persona_picks_their_version_of_a_card():
    brief = sample_brief()
    brief.cards.insert(1, card(1, "Beijing answers the new chip rules (policy)", persona="Policy Maker"))
    assert [c.persona for c in select_cards(brief, "Policy Maker")] == ["Policy Maker", "", "", "", ""]
    assert [c.persona for c in select_cards(brief, "policy maker")][:1] == ["Policy Maker"]
    assert [c.persona for c in select_cards(brief, None)] == [""] * 5
    assert [c.persona for c in select_cards(brief, "Consultant")] == [""] * 5  # no card of theirs: the general one
    out = render_brief(brief, persona="Policy Maker", unsubscribe_url=UNSUB)
    assert out.html.count("Key takeaway for Policy Maker") == 1 and "(policy)" in out.html


def test_an_empty_day_still_renders():
    brief = DailyBrief(topic="ai-geopolitics", topic_title="AI geopolitics", day="2026-12-01",
                       generated_at="2026-12-01T06:00:00+00:00", cards=[], lead=None, podcasts=None)
    out = render_brief(brief, unsubscribe_url=UNSUB)
    assert "No story reached today's brief" in out.html and "No story reached today's brief" in out.text
    assert "no new insights today" in out.subject


def test_a_social_post_among_the_links_is_labelled_unverified():
    from tests.email_helpers import ref

    brief = sample_brief()
    brief.cards[0].related.append(ref(4001, "Everyone is ignoring the Shenzhen paper", "Thread: China", kind="post"))
    out = render_brief(brief, unsubscribe_url=UNSUB)
    assert "- Thread: China (social post, unverified)" in out.text
    post_link = re.search(r'<a [^>]*title="Everyone is ignoring the Shenzhen paper"[^>]*>Thread: China</a> <span[^>]*>'
                          r'\(social post, unverified\)', out.html)
    assert post_link
    assert "(social post" not in out.text.split("Thread: China")[0]  # articles are not labelled so
