"""Thread exports (plain text or JSON) become one `Entry` per post, kind POST.

Exports of social threads are noisy: the same post repeated or lightly edited, posts cut off by
the exporter, links wrapped in redirectors or reduced to `[news.google.com]` remnants. This
module cleans each post, unwraps its links, marks the cut ones and drops repeats.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from ingest.transcripts import decode_transcript
from ingest.urls import URL_RE, canonical_url, is_http_url, unwrap_redirect
from store.entry import Entry, Kind

__all__ = ["ThreadError", "dedupe_posts", "looks_truncated", "normalise_for_dedupe", "parse_thread"]

NEAR_DUPLICATE_JACCARD = 0.8
SHINGLE_SIZE = 3
TITLE_WORDS = 12


class ThreadError(ValueError):
    """The export is empty or not something we can read as a thread."""


@dataclass(frozen=True)
class _RawPost:
    """One post as found in the export, before cleaning."""

    text: str
    author: str | None = None
    posted_at: Any = None
    url: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class _CleanPost:
    text: str
    links: tuple[str, ...]  # unwrapped, canonical, in order of appearance
    cut_in_tag: bool  # the raw text ended inside an unclosed HTML tag


# --- reading the export -------------------------------------------------------------------------


def parse_thread(data: bytes, *, source_url: str, content_type: str | None = None) -> list[Entry]:
    """Parse a thread export into entries, one per kept post, in thread order."""
    raw_posts = _read_posts(data, content_type)
    cleaned = [_clean_post(raw.text) for raw in raw_posts]
    usable = [(n, raw, clean) for n, (raw, clean) in enumerate(zip(raw_posts, cleaned), 1) if clean.text]
    if not usable:
        raise ThreadError("thread export has no post with any text")
    keys = [_dedupe_key(clean.text) for _, _, clean in usable]
    truncated = [looks_truncated(clean.text, cut_in_tag=clean.cut_in_tag) for _, _, clean in usable]
    kept = _kept_indices(keys, truncated)
    return [
        _to_entry(n, raw, clean, keys[i], truncated[i], source_url)
        for i, (n, raw, clean) in enumerate(usable)
        if i in kept
    ]


def _charset(content_type: str | None) -> str | None:
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type or "", re.I)
    return match.group(1) if match else None


def _read_posts(data: bytes, content_type: str | None) -> list[_RawPost]:
    if not data or not data.strip():
        raise ThreadError("thread export is empty")
    # BOM, then the declared charset, then UTF-8, then cp1252: the same rule as transcripts.
    text = decode_transcript(data, _charset(content_type)).replace("\x00", "")
    declared_json = "json" in (content_type or "").lower()
    if declared_json or text.lstrip()[:1] in ("[", "{"):
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            if declared_json:
                raise ThreadError(f"thread export declared as JSON is not valid JSON: {exc}") from exc
            # A plain-text post may well start with "[" ("[news.google.com] …"): read it as text.
        else:
            return _posts_from_json(payload)
    return _posts_from_text(text)


def _posts_from_text(text: str) -> list[_RawPost]:
    """One post per paragraph; a file without any blank line has one post per line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    has_blank_line = re.search(r"\n[ \t]*\n", text.strip()) is not None
    chunks = re.split(r"\n[ \t]*\n", text) if has_blank_line else text.split("\n")
    return [_RawPost(text=chunk.strip()) for chunk in chunks if chunk.strip()]


def _posts_from_json(payload: Any) -> list[_RawPost]:
    if isinstance(payload, dict) and isinstance(payload.get("posts"), list):
        payload = payload["posts"]
    if not isinstance(payload, list):
        raise ThreadError("JSON thread export must be a list of posts or an object with a 'posts' list")
    posts = [post for item in payload if (post := _post_from_json_item(item)) is not None]
    if not posts:
        raise ThreadError("JSON thread export has no post with text, body or content")
    return posts


def _post_from_json_item(item: Any) -> _RawPost | None:
    if isinstance(item, str):
        return _RawPost(text=item) if item.strip() else None
    if not isinstance(item, dict):
        return None
    text = _first_string(item, "text", "body", "content")
    if not text:
        return None
    post_id = item.get("id")
    return _RawPost(
        text=text,
        author=_author_of(item),
        posted_at=_first_present(item, "posted_at", "created_at", "date", "time"),
        url=_first_string(item, "url", "link"),
        id=str(post_id) if post_id not in (None, "") else None,
    )


def _first_string(item: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _first_present(item: dict[str, Any], *keys: str) -> Any:
    return next((item[key] for key in keys if item.get(key) not in (None, "")), None)


def _author_of(item: dict[str, Any]) -> str | None:
    for key in ("author", "user", "name"):
        value = item.get(key)
        if isinstance(value, dict):  # {"user": {"name": …, "username": …}}
            value = _first_string(value, "name", "display_name", "username", "screen_name", "handle")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


# --- cleaning a post ----------------------------------------------------------------------------

_ANCHOR_RE = re.compile(r"<a\b(?P<attrs>[^<>]*)>(?P<label>.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_HREF_RE = re.compile(
    r"""\bhref\s*=\s*
    (?: "(?P<double>[^"]*)(?P<double_end>")?     # a missing closing quote means the value was cut
      | '(?P<single>[^']*)(?P<single_end>')?
      | (?P<bare>[^\s"'>]+) )""",
    re.IGNORECASE | re.VERBOSE,
)
_UNCLOSED_TAG_AT_END_RE = re.compile(r"<[a-zA-Z/][^<>]*$")
_LINE_BREAK_TAG_RE = re.compile(r"<br\s*/?>|</p\s*>|</li\s*>|</div\s*>", re.IGNORECASE)
_TAG_RE = re.compile(r"</?[a-zA-Z!][^<>]*>")
# What an exporter leaves when it drops a link: "[news.google.com]", "[example.org/x]".
_LINK_REMNANT_RE = re.compile(r"\[[\w-]+(?:\.[\w-]+)+(?:/[^\]\s]*)?\]")


def _clean_post(raw: str) -> _CleanPost:
    """Plain text with links unwrapped in place; the links themselves, in order."""
    text, cut_in_tag = _strip_html(raw)
    links: list[str] = []

    def unwrap_in_place(match: re.Match[str]) -> str:
        found = match.group(0)
        if not is_http_url(found):
            return found
        link = canonical_url(unwrap_redirect(found))
        if link not in links:
            links.append(link)
        return link

    text = URL_RE.sub(unwrap_in_place, text)
    return _CleanPost(text=_tidy_whitespace(text), links=tuple(links), cut_in_tag=cut_in_tag)


def _strip_html(raw: str) -> tuple[str, bool]:
    """Remove markup, keeping each anchor's target; report whether the text ends mid-tag."""
    text = _ANCHOR_RE.sub(lambda m: _anchor_as_text(m.group("attrs"), m.group("label")), raw)
    unclosed = _UNCLOSED_TAG_AT_END_RE.search(text)
    if unclosed:  # the exporter cut the post inside a tag, e.g. `… insane. <a href="[news.g`
        text = text[: unclosed.start()] + _anchor_as_text(unclosed.group(0), "", cut=True)
    text = _LINE_BREAK_TAG_RE.sub("\n", text)
    text = _TAG_RE.sub(" ", text)
    return html.unescape(text), unclosed is not None


def _anchor_as_text(attrs: str, label: str, *, cut: bool = False) -> str:
    """`<a href="X">label</a>` → "label X"; a label that only repeats the URL is dropped."""
    label = html.unescape(_TAG_RE.sub(" ", label)).strip()
    href = _href_of(attrs, cut=cut)
    if not href:
        return f" {label} "
    looks_like_the_url = not label or " " not in label and "." in label
    return f" {href} " if looks_like_the_url else f" {label} {href} "


def _href_of(attrs: str, *, cut: bool) -> str | None:
    """The anchor's target when it is an http(s) URL or a `[host]` remnant; None otherwise.

    In a tag the exporter cut off (`cut`), a URL whose closing quote is missing may itself be
    cut, so only a remnant, which carries its own closing bracket, is trusted there.
    """
    match = _HREF_RE.search(attrs)
    if not match:
        return None
    value = match.group("double") if match.group("double") is not None else match.group("single")
    quote_closed = bool(match.group("double_end") or match.group("single_end"))
    href = html.unescape(value if value is not None else match.group("bare")).strip()
    if _LINK_REMNANT_RE.fullmatch(href):
        return href
    if is_http_url(href) and (quote_closed or not cut):
        return href
    return None  # javascript:, mailto:, relative or possibly cut URLs: nothing to follow


def _tidy_whitespace(text: str) -> str:
    lines = (re.sub(r"[^\S\n]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


# --- truncation ---------------------------------------------------------------------------------

_TERMINAL_CHARS = frozenset(".!?…\"'”’»)")
_EMOJI_MODIFIERS_RE = re.compile("[\ufe0f\u200d\U0001f3fb-\U0001f3ff]+$")
# Words a finished sentence almost never ends on: articles, conjunctions, auxiliaries, wh-words,
# prepositions. A long post ending on one of them was cut.
_DANGLING_WORDS = frozenset(
    """a an the and but or nor so because although though if that than whether while
    can could will would should may might must shall is are was were be been being has have had
    do does did what which who whom whose where when why how of to for with in on at by from
    about into onto over under between through as like its their our your my his her""".split()
)
_MIN_WORDS_FOR_CUT = 8  # short posts skip the final full stop too often to be judged
_MIN_CHARS_FOR_UNFINISHED_SENTENCE = 200
_MIN_WORDS_IN_UNFINISHED_SENTENCE = 6
_SENTENCE_END_RE = re.compile(r"[.!?…][\"'”’)]*\s")


def looks_truncated(text: str, *, cut_in_tag: bool = False) -> bool:
    """True when the post was evidently cut off by the exporter.

    Explicit: it ends with an ellipsis, or the raw text stopped inside an HTML tag. Otherwise it
    must lack terminal punctuation or emoji AND look cut: a one-letter fragment or dangling
    function word at the end, or a long post that punctuates its sentences but not the last one.
    A post that ends with a link (or a `[host]` remnant of one) is not judged: "read it here
    https://…" is a normal way to end.
    """
    body = text.rstrip()
    if not body:
        return False
    if cut_in_tag or body.endswith(("…", "...")):
        return True
    if _ends_with_link(body) or _ends_with_terminal(body):
        return False
    words = body.split()
    if len(words) < _MIN_WORDS_FOR_CUT:
        return False
    return _ends_mid_word(words[-1]) or _ends_mid_sentence(body, words[-1])


def _ends_with_link(body: str) -> bool:
    last_token = body.split()[-1].rstrip(".,;:!?)")
    return bool(URL_RE.fullmatch(last_token) or _LINK_REMNANT_RE.fullmatch(last_token))


def _ends_with_terminal(body: str) -> bool:
    last = _EMOJI_MODIFIERS_RE.sub("", body)[-1:]
    if not last:  # the post is nothing but modifiers
        return True
    return last in _TERMINAL_CHARS or unicodedata.category(last) == "So"


def _ends_mid_word(last_word: str) -> bool:
    """`… is really matching g` or `… state-of-`: the last word is a fragment."""
    return (len(last_word) == 1 and last_word.isalpha() and last_word not in "aAI") or last_word.endswith("-")


def _ends_mid_sentence(body: str, last_word: str) -> bool:
    if last_word.lower().strip("\"'“”‘’*_,;:") in _DANGLING_WORDS:
        return True
    # A writer who ends sentences with full stops did not leave a long last one open on purpose.
    sentence_ends = list(_SENTENCE_END_RE.finditer(body))
    if not sentence_ends or len(body) < _MIN_CHARS_FOR_UNFINISHED_SENTENCE:
        return False
    last_sentence = body[sentence_ends[-1].end() :]
    return len(last_sentence.split()) >= _MIN_WORDS_IN_UNFINISHED_SENTENCE


# --- near-duplicate detection -------------------------------------------------------------------


def normalise_for_dedupe(text: str) -> str:
    """Lowercase words only: links, link remnants and punctuation removed, whitespace collapsed."""
    text = _LINK_REMNANT_RE.sub(" ", URL_RE.sub(" ", text)).lower()
    text = re.sub(r"['’]", "", text)  # "isn't" and "isnt" are the same word
    text = re.sub(r"[\W_]+", " ", text)
    return text.strip()


def dedupe_posts(texts: list[str]) -> list[int]:
    """Indices of the posts to keep, ascending: exact and near repeats (≥ 0.8 Jaccard) dropped."""
    keys = [_dedupe_key(text) for text in texts]
    truncated = [looks_truncated(text) for text in texts]
    return sorted(_kept_indices(keys, truncated))


def _dedupe_key(text: str) -> str:
    """The normalised words; for a post with none (only links or emoji), its lowercased text,
    so that exact repeats of such posts are still caught."""
    return normalise_for_dedupe(text) or " ".join(text.lower().split())


def word_shingles(key: str) -> frozenset[str]:
    """Word n-grams (n = SHINGLE_SIZE) of a normalised text: the near-duplicate measure of posts and stories."""
    words = key.split()
    if len(words) < SHINGLE_SIZE:  # too short to shingle: the whole text is the one shingle
        return frozenset({" ".join(words)}) if words else frozenset()
    return frozenset(" ".join(words[i : i + SHINGLE_SIZE]) for i in range(len(words) - SHINGLE_SIZE + 1))


def _probe_length(size: int) -> int:
    """How many of a set's rarest shingles must be probed so no ≥ threshold match is missed.

    If |A ∩ B| ≥ t·|A|, at most |A| - ⌈t·|A|⌉ shingles of A lie outside B, so any
    |A| - ⌈t·|A|⌉ + 1 of them include a shared one. Probing the rarest keeps posting lists short.
    """
    return size - math.ceil(NEAR_DUPLICATE_JACCARD * size - 1e-9) + 1


def _kept_indices(keys: list[str], truncated: list[bool]) -> set[int]:
    """Greedy clustering in thread order against an inverted index of the kept posts.

    A post is a repeat of a kept post when their shingle Jaccard is ≥ 0.8, or when the cut one
    of the two has ≥ 0.8 of its shingles inside the other: a truncated repost shares only a
    prefix, so its Jaccard with the full post falls with the cut length, yet it says nothing new.

    Which copy survives: the first, because it is the original and the others quote it; except
    when the kept one is truncated and the repeat is complete and longer, since then the repeat
    carries the end of the claim that the cut copy lost.
    """
    shingle_sets = [word_shingles(key) for key in keys]
    document_frequency = Counter(shingle for shingles in shingle_sets for shingle in shingles)
    index: dict[str, list[int]] = defaultdict(list)  # shingle -> posts that were kept
    truncated_index: dict[str, list[int]] = defaultdict(list)  # rarest shingles of kept cut posts
    cluster_of: dict[int, int] = {}  # indexed post -> its cluster (the cluster's first post)
    survivor: dict[int, int] = {}  # cluster -> the post kept for it
    for i, shingles in enumerate(shingle_sets):
        if not shingles:  # an empty post: nothing to compare it with
            survivor[i] = i
            continue
        rarest_first = sorted(shingles, key=lambda s: (document_frequency[s], s))
        match = _find_repeat(i, rarest_first, shingle_sets, truncated, index, truncated_index)
        if match is None:
            cluster_of[i] = survivor[i] = i
            _add_to_index(i, rarest_first, truncated[i], index, truncated_index)
        elif _completes(i, survivor[cluster_of[match]], shingle_sets, truncated):
            cluster_of[i] = cluster_of[match]
            survivor[cluster_of[match]] = i
            _add_to_index(i, rarest_first, False, index, truncated_index)
    return set(survivor.values())


def _completes(new: int, kept: int, shingle_sets: list[frozenset[str]], truncated: list[bool]) -> bool:
    """Whether repeat `new` should replace the cut post `kept` as its cluster's survivor."""
    return truncated[kept] and not truncated[new] and len(shingle_sets[new]) > len(shingle_sets[kept])


def _add_to_index(
    i: int,
    rarest_first: list[str],
    is_truncated: bool,
    index: dict[str, list[int]],
    truncated_index: dict[str, list[int]],
) -> None:
    for shingle in rarest_first:
        index[shingle].append(i)
    if is_truncated:
        for shingle in rarest_first[: _probe_length(len(rarest_first))]:
            truncated_index[shingle].append(i)


def _find_repeat(
    i: int,
    rarest_first: list[str],
    shingle_sets: list[frozenset[str]],
    truncated: list[bool],
    index: dict[str, list[int]],
    truncated_index: dict[str, list[int]],
) -> int | None:
    """The earliest kept post that post `i` repeats, or None."""
    candidates: set[int] = set()
    for shingle in rarest_first[: _probe_length(len(rarest_first))]:
        candidates.update(index.get(shingle, ()))
    # A kept cut post contained in this longer one may share none of this post's rarest
    # shingles, so probe the cut posts' own rarest shingles with all of ours.
    for shingle in rarest_first:
        candidates.update(truncated_index.get(shingle, ()))
    mine = shingle_sets[i]
    for j in sorted(candidates):
        if _is_repeat(mine, shingle_sets[j], truncated[i], truncated[j]):
            return j
    return None


def _is_repeat(a: frozenset[str], b: frozenset[str], a_truncated: bool, b_truncated: bool) -> bool:
    shared = len(a & b)

    def at_least_threshold(of: int) -> bool:
        return shared + 1e-9 >= NEAR_DUPLICATE_JACCARD * of  # 1e-9: exactly 4/5 must pass

    return (
        at_least_threshold(len(a) + len(b) - shared)
        or (a_truncated and at_least_threshold(len(a)))
        or (b_truncated and at_least_threshold(len(b)))
    )


# --- building entries ---------------------------------------------------------------------------


def _to_entry(
    n: int, raw: _RawPost, clean: _CleanPost, dedupe_key: str, truncated: bool, source_url: str
) -> Entry:
    """Entry for the post at 1-based position `n` of the export."""
    url = _entry_url(n, raw, clean, source_url)
    return Entry(
        title=_title_of(clean),
        kind=Kind.POST,
        guid=raw.id or _content_guid(source_url, dedupe_key),
        url=url,
        canonical_url=canonical_url(url),
        author=raw.author,
        published=_parse_time(raw.posted_at),
        language=None,
        text=clean.text,
        truncated=truncated,
    )


def _content_guid(source_url: str, dedupe_key: str) -> str:
    # Hash the normalised words, not the raw text, so a re-export that re-wraps links or changes
    # whitespace keeps the same guid.
    return f"{source_url}#" + hashlib.sha1(dedupe_key.encode("utf-8")).hexdigest()[:16]


def _entry_url(n: int, raw: _RawPost, clean: _CleanPost, source_url: str) -> str:
    """The first link leaving the thread's own site; else the post's permalink; else an anchor."""
    source_host = (urlsplit(canonical_url(source_url)).hostname or "") if is_http_url(source_url) else ""
    for link in clean.links:
        if urlsplit(link).hostname != source_host:
            return link
    if raw.url:
        permalink = unwrap_redirect(raw.url)
        if is_http_url(permalink):
            return canonical_url(permalink)
    return f"{source_url}#post-{n}"


def _title_of(clean: _CleanPost) -> str:
    """The first ~12 words, links left out; an ellipsis when words were dropped."""
    tokens = _LINK_REMNANT_RE.sub(" ", URL_RE.sub(" ", clean.text)).split()
    if not tokens:  # a link-only post
        return clean.links[0] if clean.links else clean.text[:80]
    words = 0
    for position, token in enumerate(tokens):
        words += bool(re.search(r"\w", token))  # a lone "—" is not a word
        if words > TITLE_WORDS:
            return " ".join(tokens[:position]).rstrip(",;:—–-") + "…"
    return " ".join(tokens)


def _parse_time(value: Any) -> datetime | None:
    """ISO 8601, RFC 2822 or epoch seconds/milliseconds → aware UTC datetime; None if unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*", value):
        value = float(value)
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    if not isinstance(value, str):
        return None
    parsed = _from_iso(value.strip()) or _from_rfc2822(value.strip())
    if parsed is None:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _from_epoch(seconds: float) -> datetime | None:
    if seconds > 1e11:  # milliseconds: 1e11 seconds is the year 5138
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _from_iso(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _from_rfc2822(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
