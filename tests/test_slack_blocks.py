"""Block Kit rendering: content, Slack's limits, and untrusted feed text kept inert."""

from __future__ import annotations

from datetime import UTC, datetime

from api.slack import blocks as bk
from digest import slack_blocks as sb
from digest.summary.schema import Sentence, SourceRef
from embed.search import SearchHit
from tests.test_slack import all_text, assert_valid_blocks, card, make_brief


def test_the_brief_shows_each_insight_with_sources_takeaway_and_related():
    blocks = sb.brief_blocks(make_brief(cards=5))
    assert_valid_blocks(blocks)
    sections = [b for b in blocks if b["type"] == "section"]
    assert sum("Key takeaway" in s["text"]["text"] for s in sections) == 5
    first = next(i for i, b in enumerate(blocks) if b["type"] == "section" and "Insight 1" in b["text"]["text"])
    sources, related = blocks[first + 1], blocks[first + 2]
    assert sources["type"] == related["type"] == "context"
    assert "<https://news.example/101|Source 101 on export controls> · Chip Wire · 2026-11-30" in all_text([sources])
    assert related["elements"][0]["text"].startswith("*Related:* <https://news.example/301|")
    text = all_text(blocks)
    assert "Huawei parts now train mid-size models." in text and "Sinica · 2026-11-30 · at 1:01" in text
    assert "*Unverified*" in text and "_(unverified)_" in text


def test_a_huge_brief_stays_inside_block_kit_limits():
    brief = make_brief(cards=40, summary="Very long summary sentence about chips. " * 300)
    brief.cards[0].title = "T" * 500
    brief.cards[0].sources = [SourceRef(i, f"s{i}", f"https://x.example/{i}", "P", "article") for i in range(30)]
    brief.topic_title = "A" * 400
    blocks = sb.brief_blocks(brief)
    assert_valid_blocks(blocks)
    assert len(blocks) == 50 and "more in the full brief" in blocks[-1]["elements"][0]["text"]
    assert blocks[0]["text"]["text"].endswith("…") and len(blocks[0]["text"]["text"]) == 150
    assert len(sb.brief_text(brief)) <= sb.MAX_FALLBACK_TEXT


def test_feed_text_cannot_mention_everyone_or_forge_links():
    hostile = card(1)
    hostile.title = "<!channel> Read <https://evil.example|this> & win"
    hostile.summary = [Sentence("Click <http://phish.example|your bank> now <@U123>")]
    hostile.sources = [SourceRef(1, "a|b>c", "javascript:alert(1)", "Pub <b>", "article"),
                       SourceRef(2, "ok", "https://x.example/a|b>c d", "Pub", "article")]
    brief = make_brief(cards=0)
    brief.cards = [hostile]
    text = all_text(sb.brief_blocks(brief))
    assert "<!channel>" not in text and "<@U123>" not in text and "<http://phish" not in text
    assert "&lt;!channel&gt; Read &lt;https://evil.example|this&gt; &amp; win" in text
    assert "javascript" not in text and "a|b&gt;c · Pub &lt;b&gt;" in text  # its title alone, never a link
    assert "<https://x.example/a%7Cb%3Ec%20d|ok>" in text


def test_clip_never_cuts_an_escape_or_a_link_in_half():
    assert sb.clip("abc", 3) == "abc"
    assert sb.clip("hello &amp; world", 9) == "hello…"
    assert sb.clip("see <https://a.example/very/long|label> more", 20) == "see…"
    assert len(sb.clip("x" * 5000, 3000)) == 3000


def hit(kind: str, **extra) -> SearchHit:
    return SearchHit(item_id=1, passage_id=2, title="Compute Pod 42", url="https://pod.example/42", source="Compute Pod",
                     source_id=1, published=datetime(2026, 11, 29, tzinfo=UTC), kind=kind, language="en",
                     text="Export controls keep tightening. " * 40, score=0.5, **extra)


def test_answers_show_title_link_publisher_date_and_the_episode_timestamp():
    blocks = bk.answer_blocks("what about <export> controls?", [hit("episode", start=3725.0, end=3790.0, more_passages=2),
                                                                 hit("article")])
    assert_valid_blocks(blocks)
    text = all_text(blocks)
    assert "*Q:* what about &lt;export&gt; controls?" in text
    assert "<https://pod.example/42#t=3725|Compute Pod 42> · Compute Pod · 2026-11-29 · at 1:02:05–1:03:10" in text
    assert "2 more matching passage(s) in this episode" in text
    excerpt = next(b for b in blocks if b["type"] == "section" and "at 1:02:05" in b["text"]["text"])["text"]["text"]
    assert len(excerpt.split("\n>", 1)[1]) <= bk.EXCERPT_CHARS
    assert "Nothing in the index matches" in all_text(bk.answer_blocks("zzz", []))


def test_a_channel_reads_each_story_once_in_the_general_readers_version():
    import dataclasses

    brief = make_brief(cards=3)
    general = brief.cards[0]
    brief.cards = [dataclasses.replace(general, persona=""),
                   dataclasses.replace(general, persona="Policy Maker",
                                       key_takeaway=[Sentence("Lawmakers will hold hearings on the rule.", [9])]),
                   *[dataclasses.replace(c, persona="") for c in brief.cards[1:]]]
    text = all_text(sb.brief_blocks(brief))
    assert text.count("Key takeaway") == 3 and "Lawmakers will hold hearings" not in text and "(for " not in text
    assert sb.brief_text(brief).count(general.title) == 1
