"""Sentence-level text features shared by the extractive backend and the support check.

Sentence splitting is embed.passages' (one splitter for passages and summaries). Everything
here is cheap string work: no model, no I/O.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from embed.passages import split_sentences
from ingest.text import word_count

__all__ = ["split_sentences", "word_count", "content_words", "numbers", "entities", "addresses_model",
           "is_recommendation", "is_question", "is_generic", "reading_minutes", "WORDS_PER_MINUTE", "STOPWORDS"]

WORDS_PER_MINUTE = 230

STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself
him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most
mustn't my myself no nor not now of off on once only or other ought our ours ourselves out over own same shan't
she she'd she'll she's should shouldn't so some such than that that's the their theirs them themselves then
there there's these they they'd they'll they're they've this those through to too under until up very was
wasn't we we'd we'll we're we've were weren't what what's when when's where where's which while who who's whom
why why's will with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves said says
say one also like just get got us many much may might must new would could well even still yet however
""".split()) | frozenset(  # words about the summary itself ("the speaker discusses"), not about the world
    """document article text piece author writer speaker speakers host hosts guest podcast episode transcript
    summary discuss discusses discussed discussing explain explains explained describe describes described
    mention mentions mentioned highlight highlights highlighted talk talks talked note notes noted
    provide provides provided share shares shared""".split())

_WORD = re.compile(r"[A-Za-z\u00C0-\u024F][\w'\u2019-]*|\d[\d,.]*%?")
_NUMBER = re.compile(r"(?<![\w.])[$€£]?\d[\d,]*(?:\.\d+)?(?:%|\s?(?:percent|bn|billion|million|trillion|m|k))?")
_NUMBER_WORDS = {"two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
                 "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20", "hundred": "100",
                 "thousand": "1000", "dozen": "12", "half": "0.5", "first": "1st", "second": "2nd", "third": "3rd"}
# A name: a capitalised or mixed-case token (Qwen, DeepSeek), an acronym (HBM, EU), a letter-digit model
# name (R1, GPT-5, H20).
_NAME = re.compile(r"\b(?:[A-Z][a-z]*[A-Z0-9][\w-]*|[A-Z]{2,}[\w-]*|[A-Z][a-z\u00C0-\u024F'’-]+)\b")


@lru_cache(maxsize=50_000)
def _stem(word: str) -> str:
    """A crude stem so that "models"/"model" and "restricted"/"restrict" match; never shortens below 4."""
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def tokens(text: str) -> list[str]:
    return [t.lower().replace("\u2019", "'") for t in _WORD.findall(text)]


@lru_cache(maxsize=20_000)  # the same passages are evidence for every sentence that cites them
def content_words(text: str) -> frozenset[str]:
    """Stemmed, lowercased words that carry meaning (no stopwords, no one-letter tokens)."""
    return frozenset(_stem(t.strip("'-")) for t in tokens(text)
                     if t not in STOPWORDS and len(t) > 1 and not t[0].isdigit())


def _canonical_number(raw: str) -> str:
    raw = raw.lower().replace(",", "").replace("percent", "%").replace(" ", "")
    raw = raw.lstrip("$€£")
    raw = re.sub(r"(?<=\d)\.0+(?=\D|$)", "", raw)
    return raw.rstrip("%") if raw.endswith("%") else re.sub(r"(bn|billion|million|trillion|m|k)$", "", raw)


@lru_cache(maxsize=20_000)
def numbers(text: str) -> frozenset[str]:
    """Numbers in a canonical form ("1,000" == "1000", "3.0%" == "3"), plus spelled-out small numbers."""
    found = {_canonical_number(m.group(0)) for m in _NUMBER.finditer(text)}
    found |= {_NUMBER_WORDS[t] for t in tokens(text) if t in _NUMBER_WORDS}
    return frozenset(n for n in found if n)


@lru_cache(maxsize=20_000)
def entities(text: str) -> frozenset[str]:
    """Names, lowercased: capitalised tokens that do not merely start a sentence, acronyms, model names."""
    found: set[str] = set()
    for sentence in split_sentences(text) or [text]:
        for m in _NAME.finditer(sentence):
            word = m.group(0)
            at_start = not sentence[: m.start()].strip(" \"'“‘([")
            mixed = any(c.isupper() for c in word[1:]) or any(c.isdigit() for c in word)
            if (at_start and not mixed) or word.lower() in STOPWORDS:
                continue
            found.add(word.lower().strip("'’-"))
    return frozenset(found)


# Source text that talks to the model instead of the reader: never content, never citable.
_ADDRESSES_MODEL = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.!?]{0,40}\b(?:instructions?|prompts?|rules|directions)\b"
    r"|\bsystem\s+prompt\b|\bprompt\s+injection\b"
    r"|\byou\s+are\s+(?:now\s+)?(?:an?\s+|the\s+)?(?:ai|assistant|language\s+model|chat\s?bot|llm|model)\b"
    r"|\bas\s+an\s+(?:ai|llm|assistant|language\s+model)\b"
    r"|\b(?:assistant|system|user)\s*:|<\|?(?:im_start|im_end|system|endoftext)\|?>|\[/?INST\]"
    r"|\b(?:respond|reply|answer|output|print)\s+(?:only|with\s+only|exactly)\b",
    re.IGNORECASE,
)


def addresses_model(sentence: str) -> bool:
    return bool(_ADDRESSES_MODEL.search(sentence))


_MODAL_ADVICE = re.compile(
    r"\b(?:should|must|ought to|need(?:s)? to|have to|has to|it is (?:important|essential|crucial|vital) to"
    r"|it(?:'s| is) worth|recommend(?:s|ed)?|advis(?:e|es|ed)|consider(?:ing)?|make sure|be sure to|avoid)\b",
    re.IGNORECASE,
)
_IMPERATIVE_START = frozenset("""
consider evaluate use build invest start stop avoid ensure focus prioritise prioritize plan prepare review
check assess track watch monitor adopt test keep make take look think treat expect host research compare
audit measure limit reduce increase diversify learn read try remember beware note insist demand push
""".split())


def is_recommendation(sentence: str) -> bool:
    """Advice: a modal of obligation or advice, or an imperative verb opening the sentence."""
    words = tokens(sentence)
    if words and words[0] in _IMPERATIVE_START:
        return True
    return bool(_MODAL_ADVICE.search(sentence))


def is_question(sentence: str) -> bool:
    return sentence.rstrip(" \"'”’)").endswith("?")


def is_generic(sentence: str) -> bool:
    """A general statement (a principle): no figures, no dates, at most one name."""
    return not numbers(sentence) and len(entities(sentence)) <= 1 and not is_question(sentence)


def reading_minutes(words: int) -> int:
    return max(1, math.ceil(words / WORDS_PER_MINUTE))


_NAME_TOKEN = re.compile(r"[A-Z][\w'’-]*")


def name_mentions(sentence: str) -> list[str]:
    """Names as written: runs of capitalised tokens ("European Commission", "Qwen", "GPT-5", "HBM"),
    split at a possessive ("Alibaba's Qwen" is two), skipping a plain capitalised word that merely
    starts the sentence."""
    out: list[str] = []
    run: list[str] = []

    def close() -> None:
        words = [w for w in run if w.lower() not in STOPWORDS]
        if words:
            out.append(" ".join(words).strip("'’-"))
        run.clear()

    for n, word in enumerate(sentence.split()):
        word = word.strip(".,;:!?\"“”‘()[]")
        if not _NAME_TOKEN.fullmatch(word):
            close()
            continue
        plain = not (any(c.isupper() for c in word[1:]) or any(c.isdigit() for c in word))
        if n == 0 and plain:
            continue
        possessive = re.search(r"['’]s$", word)
        run.append(word[: possessive.start()] if possessive else word)
        if possessive:
            close()
    close()
    return [n for n in out if len(n) > 1]


def is_jargon(name: str) -> bool:
    """A term a reader may not know: an acronym, a mixed-case or letter-digit name (R1, HBM, DeepSeek)."""
    return any(c.isdigit() for c in name) or sum(c.isupper() for c in name) >= 2
