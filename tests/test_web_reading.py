"""What a reader of the web pages would trip over, fixed after looking at the real world's pages:
Chinese titles, passages and publishers marked lang="zh", a thread's posts counted rather than
numbered (2)…(9), no item listed twice on a story page, dates on every page, no headline repeated
at the start of its own search passage, the filters folded away until used, no "..".

Against uvicorn on loopback and the test world (tests/web_world.py); a second brief, on a topic of
its own ("languages-test"), carries a card covered only in Chinese and a Chinese source.
"""

from __future__ import annotations

import copy
import re

import pytest
from sqlalchemy import select

from tests.web_world import Visitor, web_server, web_world  # noqa: F401 - fixtures

LANG_TOPIC = "languages-test"
ZH_TITLE = "美国出口管制新规增设内存带宽门槛"
ZH_PUBLISHER = "智能观察 Zhineng Guancha"


@pytest.fixture(scope="module")
def reader(web_server, web_world):
    visitor = Visitor(web_server.base_url)
    assert visitor.sign_in(web_world.api_key).status_code == 303
    yield visitor
    visitor.close()


@pytest.fixture(scope="module")
def languages_brief(web_world) -> str:
    """A copy of today's brief on its own topic: card 1 covered only in Chinese, card 2 with a Chinese
    source beside its English ones. Returns its page's path."""
    from store.models import Brief

    with web_world.sessions() as session, session.begin():
        today = session.scalars(select(Brief).where(Brief.topic == web_world.topic, Brief.day == web_world.day)).one()
        payload = copy.deepcopy(today.payload)
        first, second = payload["cards"][0], payload["cards"][1]
        first.update(title=ZH_TITLE, covered_only_in="zh", summary=[], key_takeaway=[], key_insights=[],
                     principles=[], in_practice=[])
        chinese = dict(second["sources"][0], publisher=ZH_PUBLISHER, title="国内AI实验室加速转向国产算力", language="zh")
        second["related"] = [*second.get("related", []), chinese]
        second["attribution"] = f"Original articles published by Policy Wire (sample) and {ZH_PUBLISHER}."
        payload["topic"] = LANG_TOPIC
        session.add(Brief(topic=LANG_TOPIC, day=web_world.day, payload=payload, content_hash="languages-test"))
    return f"/briefs/{LANG_TOPIC}/{web_world.day}"


def test_a_chinese_headline_and_publisher_carry_their_language(reader, languages_brief):
    page = reader.http.get(languages_brief)
    assert page.status_code == 200
    html = page.text
    # The covered-only card's Chinese headline, in "Today in five lines" and on the card itself
    assert len(re.findall(rf'<a href="[^"]+" lang="zh">{ZH_TITLE}</a>', html)) == 2, html[:3000]
    assert "Covered only in Chinese" in html
    # The Chinese publisher: in the sources, and inside the attribution sentence
    assert re.search(rf'<a href="[^"]+" title="[^"]*" lang="zh">{ZH_PUBLISHER}</a>', html)
    assert f'and <span lang="zh">{ZH_PUBLISHER}</span>.' in html
    assert '(in Chinese: “<span lang="zh">国内AI实验室加速转向国产算力</span>”)' in html
    assert 'lang="zh">Policy Wire' not in html  # English names stay unmarked


def test_a_threads_posts_are_counted_not_numbered(reader, web_world):
    html = reader.http.get(f"/briefs/{web_world.topic}/{web_world.day}").text
    counted = re.search(r"\((\d+) social posts, unverified\)", html)
    assert counted and int(counted.group(1)) > 3, "a long thread is counted"
    assert not re.search(r'aria-label="Thread[^"]*, item [4-9]"', html), "no (4) (5) … links for a thread"


def test_a_story_page_lists_each_item_once_with_its_time(reader, web_world):
    html = reader.http.get(f"/stories/{web_world.story_ids[0]}").text
    sources = re.search(r'<ol class="sources">(.*?)</ol>', html, re.S).group(1)
    others = re.search(r'<ul class="members">(.*?)</ul>', html, re.S)
    links = re.findall(r'<a href="([^"]+)"', sources + (others.group(1) if others else ""))
    assert links and len(links) == len(set(links)), "an item is listed once, in Sources or in Also in this story"
    assert "Every item in this story" not in html  # the story was summarised: its sources are the list
    assert re.search(r'<time datetime="[^"]+">\d{1,2} \w{3} \d{4}, \d\d:\d\d UTC</time>', sources)
    assert "Editorial · AI geopolitics" in html and "Editorial · ai-geopolitics" not in html
    assert re.search(r"Rank 1 in the AI geopolitics brief of \w+day \d{1,2} \w+ \d{4}", html)


def test_a_chinese_story_is_marked_as_chinese(reader, web_world):
    from store.models import Item, StoryItem

    with web_world.sessions() as session:
        story_id, title = session.execute(select(StoryItem.story_id, Item.title).join(Item, Item.id == StoryItem.item_id)
                                          .where(Item.language.like("zh%")).limit(1)).one()
    html = reader.http.get(f"/stories/{story_id}").text
    assert re.search(r'<h1 id="story-title" lang="zh[^"]*">', html), "a story told only in Chinese: its headline"
    assert re.search(rf'lang="zh[^"]*">{re.escape(title)}</a>', html), "its item's title"


def test_search_hits_carry_their_language(reader):
    html = reader.http.get("/find", params={"q": "芯片", "lang": "zh", "mode": "vector"}).text
    hits = html.count('<li class="hit">')
    assert hits >= 1
    assert len(re.findall(r'<h3 lang="zh[^"]*">', html)) == hits
    assert len(re.findall(r'<blockquote lang="zh[^"]*">', html)) == hits
    english = reader.http.get("/find", params={"q": "export controls", "lang": "en"}).text
    assert '<li class="hit">' in english and 'lang="' not in english.split('<main', 1)[1]


def test_a_hit_does_not_repeat_its_headline_in_its_passage():
    from api.web.routes_find import without_title

    title = "Commerce Department tightens AI chip controls"
    assert without_title(f"{title}. WASHINGTON — The rule", title) == "WASHINGTON — The rule"
    assert without_title(f"{title} A survey of 1,120 start-ups", title) == "A survey of 1,120 start-ups"
    # a post's title is its own text cut short: the passage then starts mid-sentence, so it stays whole
    post = "Underrated: Ferrite already ships FP8 kernels for the XH-3. A lot of…"
    text = "Underrated: Ferrite already ships FP8 kernels for the XH-3. A lot of the gap is software."
    assert without_title(text, post) == text
    assert without_title(f"{title} were widened", title) == f"{title} were widened"
    assert without_title(title, title) == title


def test_search_results_come_before_folded_filters(reader):
    plain = reader.http.get("/find", params={"q": "export controls"}).text
    assert '<details class="filter-box">' in plain  # folded: the results are on the first screen
    filtered = reader.http.get("/find", params={"q": "export controls", "kind": "article"}).text
    assert '<details class="filter-box" open>' in filtered and "(1 set)" in filtered


def test_every_page_has_its_date(reader, web_world):
    insight = reader.http.get(f"/insights/{web_world.story_ids[1]}").text
    assert re.search(rf'<time datetime="{web_world.day}">\w+day \d{{1,2}} \w+ \d{{4}}</time>', insight)
    assert ".." not in re.search(r'<p class="attribution">(.*?)</p>', insight, re.S).group(1)
    briefs = reader.http.get("/briefs").text
    assert re.search(rf'<time datetime="{web_world.day}">\w+day \d{{1,2}} \w+ \d{{4}}</time>', briefs)
    found = reader.http.get("/find", params={"q": "export controls"}).text
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\d">\d{1,2} \w{3} \d{4}</time>', found)
    podcasts = reader.http.get(f"/podcasts/{web_world.topic}/{web_world.day}").text
    insights = podcasts.count('<p class="meta">')
    episodes_dated = re.findall(r'<p class="meta">.*?, <time datetime="\d{4}-\d\d-\d\d">\d{1,2} \w{3} \d{4}</time></p>',
                                podcasts)
    assert insights >= 3 and len(episodes_dated) == insights, "each episode with its day"
    fresh = Visitor(str(reader.http.base_url))
    signin = fresh.http.get("/signin").text
    fresh.close()
    assert "Summaries by briefcast" not in signin  # a page with no summary does not claim one


def test_with_langs_escapes_and_marks_only_the_names():
    from dataclasses import dataclass

    from api.web.languages import other_lang, with_langs

    @dataclass
    class Group:
        name: str
        lang: str

    text = 'Published by <b>Wire</b> and 智能观察 & co'
    marked = str(with_langs(text, [Group("智能观察 & co", "zh"), Group("Wire", "")]))
    assert marked == 'Published by &lt;b&gt;Wire&lt;/b&gt; and <span lang="zh">智能观察 &amp; co</span>'
    assert [other_lang(c) for c in ("en", "en-GB", None, "zh", "ZH-CN", 'zh" onclick')] == ["", "", "", "zh", "zh-cn", ""]


def test_a_subscriber_from_their_email_meets_no_links_they_cannot_follow(web_server, web_world, reader):
    """No API key: the reader's pages would only answer with the sign-in form, so the header offers none."""
    subscriber = Visitor(web_server.base_url)
    page = subscriber.http.get(f"/subscription/{web_world.manage_link}").text
    header = page[page.index("<header"):page.index("</header>")]
    assert 'aria-label="Main"' not in header and 'href="/find"' not in header and "Sign in" not in header
    signed_in = reader.http.get("/find").text
    assert 'aria-label="Main"' in signed_in and 'href="/find"' in signed_in
    subscriber.close()
