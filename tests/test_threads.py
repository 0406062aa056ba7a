"""Thread exports → one Entry per post: the real seed thread, synthetic threads and JSON exports."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from ingest.threads import ThreadError, dedupe_posts, looks_truncated, parse_thread
from ingest.urls import URL_RE
from store.entry import Kind

SEED_003 = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "003_b3f3aefd5886670b.txt"
SOURCE = "https://social.example/threads/003"


@pytest.fixture(scope="module")
def seed_bytes() -> bytes:
    if not SEED_003.is_file():
        pytest.skip(f"seed thread not found at {SEED_003}")
    return SEED_003.read_bytes()


@pytest.fixture(scope="module")
def seed_entries(seed_bytes):
    return parse_thread(seed_bytes, source_url=SOURCE)


# --- the real seed thread -----------------------------------------------------------------------


def test_seed_has_one_post_per_line_and_no_repeats(seed_bytes, seed_entries):
    # The file has no blank line, so each of its 8 lines is a post; none repeats another.
    assert len(seed_bytes.decode().splitlines()) == 8
    assert len(seed_entries) == 8
    assert all(entry.kind is Kind.POST for entry in seed_entries)


def test_the_two_yo_this_posts_are_different_posts(seed_bytes, seed_entries):
    # Read side by side they share an opening and a topic, not their words: "yo this just
    # dropped, The Economist is calling it…" vs "yo this is exactly the story im watching…".
    lines = seed_bytes.decode().splitlines()
    yo = [line for line in lines if line.startswith("yo this")]
    assert len(yo) == 2
    assert dedupe_posts(yo) == [0, 1]
    assert [entry.text[:7] for entry in seed_entries].count("yo this") == 2


def test_seed_truncated_posts_are_marked(seed_entries):
    by_position = {int(entry.url.rsplit("-", 1)[1]): entry for entry in seed_entries}
    truncated = {n for n, entry in by_position.items() if entry.truncated}
    # 1 stops inside `<a href="[news.google.com]`; 3 "…who can"; 6 "…really matching g";
    # 7 "…but misses" after full-stopped sentences; 8 "…Putting together what".
    # 5 ends on a link remnant after an unpunctuated but complete clause: not judged.
    assert truncated == {1, 3, 6, 7, 8}


def test_seed_google_news_remnants_leave_no_junk(seed_entries):
    for n, entry in enumerate(seed_entries, 1):
        assert entry.url == f"{SOURCE}#post-{n}"  # the remnants are not links
        assert URL_RE.search(entry.text) is None
        assert "<a" not in entry.text and "href" not in entry.text
        assert "news.google.com]" not in entry.title
    first, fifth = seed_entries[0], seed_entries[4]
    assert first.text.endswith("actually insane. [news.google.com]")
    assert fifth.text.endswith("closed APIs [news.google.com]")


def test_seed_titles_authors_and_guids(seed_bytes, seed_entries):
    first = seed_entries[0]
    assert first.title == "yo this just dropped, The Economist is calling it — China having another…"
    assert all(entry.author is None and entry.published is None and entry.language is None for entry in seed_entries)
    guids = [entry.guid for entry in seed_entries]
    assert len(set(guids)) == len(guids)
    assert all(guid.startswith(f"{SOURCE}#") and len(guid) == len(SOURCE) + 17 for guid in guids)
    assert [entry.guid for entry in parse_thread(seed_bytes, source_url=SOURCE)] == guids


def test_re_export_with_other_whitespace_and_blank_lines_keeps_guids(seed_bytes, seed_entries):
    re_exported = b"\r\n\r\n".join(b"  " + line.replace(b" ", b"  ") for line in seed_bytes.splitlines())
    assert [entry.guid for entry in parse_thread(re_exported, source_url=SOURCE)] == [e.guid for e in seed_entries]


# --- synthetic threads --------------------------------------------------------------------------

FULL_CLAIM = (
    "The regulator confirmed on Tuesday that the merger review will run into next spring, "
    "and both companies said they expect to sell off the overlapping cable assets first."
)


def test_exact_and_near_duplicates_are_dropped_first_copy_kept():
    thread = "\n\n".join(
        [
            "Big news: the city council voted 7-2 to fund the new light rail line through the east side.",
            "Unrelated: does anyone know a good bakery near the station? Asking for a friend.",
            "Big news: the city council voted 7-2 to fund the new light rail line through the east side.",
            "BIG NEWS — the city council voted 7-2 to fund the new light-rail line through the east side!!",
            "big news: the city council voted 7 2 to fund the new light rail line through the east side today.",
            "The council also delayed the vote on the stadium until the autumn session, per the clerk.",
        ]
    )
    entries = parse_thread(thread.encode(), source_url=SOURCE)
    assert [entry.url for entry in entries] == [f"{SOURCE}#post-{n}" for n in (1, 2, 6)]


def test_truncated_first_copy_gives_way_to_the_complete_repost():
    cut = FULL_CLAIM[:110].rstrip() + "…"
    thread = "\n\n".join([cut, "Source? I can't find it anywhere.", FULL_CLAIM, cut])
    entries = parse_thread(thread.encode(), source_url=SOURCE)
    assert [entry.text for entry in entries] == ["Source? I can't find it anywhere.", FULL_CLAIM]
    assert not any(entry.truncated for entry in entries)


def test_complete_post_is_kept_over_a_later_cut_repost():
    cut = FULL_CLAIM[:110].rstrip() + "…"
    assert dedupe_posts([FULL_CLAIM, cut, "Something else entirely, said at length here."]) == [0, 2]


def test_repeated_link_only_posts_are_dropped_too():
    link = "https://example.org/report?id=3"
    wrapped = f"https://www.google.com/url?q={quote(link, safe='')}"
    entries = parse_thread(f"{link}\n{wrapped}\nhttps://example.org/other".encode(), source_url=SOURCE)
    assert [entry.url for entry in entries] == [link, "https://example.org/other"]
    assert entries[0].title == link


def test_paragraph_posts_keep_their_inner_line_breaks():
    thread = "first post line one\nline two of the first post\n\n\n  second post here  \n"
    texts = [entry.text for entry in parse_thread(thread.encode(), source_url=SOURCE)]
    assert texts == ["first post line one\nline two of the first post", "second post here"]


def test_redirect_links_are_unwrapped_in_text_and_become_the_entry_url():
    article = "https://www.reuters.com/technology/chips-2026-01-05/?utm_source=twitter&id=7"
    wrapped = f"https://l.facebook.com/l.php?u={quote(article, safe='')}&h=AT3"
    own = f"{SOURCE}/reply/9"
    thread = (
        f'Read this: <a href="{wrapped}" target="_blank">Reuters on chips</a> and my notes at {own}.\n\n'
        f"Only a link to ourselves: {own}\n\n"
        '<a href="javascript:alert(1)">click me</a> for nothing'
    )
    first, second, third = parse_thread(thread.encode(), source_url=SOURCE)
    clean = "https://www.reuters.com/technology/chips-2026-01-05/?id=7"
    assert first.text == f"Read this: Reuters on chips {clean} and my notes at {own}."
    assert first.url == clean
    assert second.url == f"{SOURCE}#post-2"  # a link back into the thread is not external
    # store keys entries by this: every post without an external link shares the thread's URL
    assert (first.canonical_url, second.canonical_url, third.canonical_url) == (clean, SOURCE, SOURCE)
    assert third.text == "click me for nothing" and "javascript" not in third.text


def test_a_url_cut_inside_its_tag_is_not_kept_as_a_link():
    thread = (
        'Worth reading, the whole piece is excellent and long. <a href="https://news.google.com/rss/artic\n\n'
        'Same here, the whole piece is excellent and long. <a href="https://example.org/piece" title'
    )
    cut_url, closed_url = parse_thread(thread.encode(), source_url=SOURCE)
    assert cut_url.url == f"{SOURCE}#post-1" and "news.google.com" not in cut_url.text
    assert closed_url.url == "https://example.org/piece"
    assert cut_url.truncated and closed_url.truncated


def test_text_starting_with_a_bracket_is_not_mistaken_for_json():
    entries = parse_thread(b"[news.google.com] the headline says it all\n", source_url=SOURCE)
    assert [entry.text for entry in entries] == ["[news.google.com] the headline says it all"]


def test_five_thousand_posts_dedupe_to_the_expected_count():
    rng = random.Random(20260105)
    vocabulary = [f"term{i}" for i in range(4000)]
    originals = [" ".join(rng.choices(vocabulary, k=40)) + "." for _ in range(3000)]
    exact = originals[:1000]
    near = []
    for text in originals[1000:2000]:
        words = text.split()
        words[20] = "edited"  # one word changed: 35 of 41 shingles shared, Jaccard 0.85
        near.append(" ".join(words))
    repeats = exact + near
    rng.shuffle(repeats)
    kept = dedupe_posts(originals + repeats)
    assert len(originals + repeats) == 5000
    assert kept == list(range(3000))


# --- JSON exports -------------------------------------------------------------------------------


def test_json_export_with_mixed_field_names():
    posts = [
        {"id": 101, "text": "Launch moved to <b>Thursday</b> &amp; the crew is confirmed.", "author": "ops",
         "created_at": "2026-01-05T14:30:00Z", "url": "https://social.example/p/101"},
        {"body": "Weather looks fine for Thursday.", "user": {"username": "wx", "id": 9},
         "posted_at": 1767623400, "link": "https://social.example/p/102"},
        {"content": "Press kit: https://www.google.com/url?q=https%3A%2F%2Fnasa.example%2Fkit%23top&sa=D",
         "name": "press", "date": "2026-01-05T10:00:00+01:00"},
        "A bare string post, no metadata at all.",
        {"time": 1767630000000, "text": "Millisecond epochs happen too."},
        {"text": "   "},
        {"author": "nobody"},
        17,
    ]
    entries = parse_thread(json.dumps(posts).encode(), source_url=SOURCE)
    assert [entry.author for entry in entries] == ["ops", "wx", "press", None, None]
    assert [entry.guid for entry in entries][:1] == ["101"]
    assert entries[0].text == "Launch moved to Thursday & the crew is confirmed."
    assert entries[0].url == "https://social.example/p/101"  # no link in the text: its permalink
    assert entries[2].url == "https://nasa.example/kit"
    assert entries[3].url == f"{SOURCE}#post-4"
    assert [entry.published for entry in entries] == [
        datetime(2026, 1, 5, 14, 30, tzinfo=UTC),
        datetime(2026, 1, 5, 14, 30, tzinfo=UTC),
        datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        None,
        datetime(2026, 1, 5, 16, 20, tzinfo=UTC),
    ]
    assert all(entry.published is None or entry.published.tzinfo is UTC for entry in entries)


def test_json_posts_object_and_content_type_detection():
    payload = b'  \n{"posts": [{"text": "one"}, {"text": "two"}]}'
    assert [entry.text for entry in parse_thread(payload, source_url=SOURCE)] == ["one", "two"]
    declared = b'["only via the header"]'
    entries = parse_thread(declared, source_url=SOURCE, content_type="application/json; charset=utf-8")
    assert [entry.text for entry in entries] == ["only via the header"]


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"", None, "empty"),
        (b"  \n\n\t ", None, "empty"),
        (b"<br><p></p>", None, "no post"),
        (b"[]", None, "no post"),
        (b'{"items": []}', None, "'posts' list"),
        (b'{"posts": [{"author": "x"}]}', None, "no post"),
        (b"not json", "application/json", "not valid JSON"),
        (b"\x00\x00\x00", None, "no post"),  # NULs only: nothing readable once they are dropped
    ],
)
def test_unusable_input_raises_thread_error(data, content_type, message):
    with pytest.raises(ThreadError, match=message):
        parse_thread(data, source_url=SOURCE, content_type=content_type)


def test_thread_error_is_a_value_error():
    assert issubclass(ThreadError, ValueError)


# --- truncation heuristics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "The piece is worth reading in full, especially the section on export controls…",
        "and then the minister said...",
        "The report covers six labs across three provinces and it says that the",
    ],
)
def test_truncated(text):
    assert looks_truncated(text)


@pytest.mark.parametrize(
    "text",
    [
        "The full report from the ministry is out today and worth a read https://example.com/report",
        "The full report from the ministry is out today and worth a read [example.com]",
        "lol same",
        "ok this is the best thread I have read all week 🔥",
        "He called it “the biggest shift in a decade.”",
        "We will see what happens with the vote next week (probably nothing)",
    ],
)
def test_not_truncated(text):
    assert not looks_truncated(text)
