"""HTML to readable text, word counts and teaser detection."""

from __future__ import annotations

import html
import re

import lxml.etree
import lxml.html

BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
    "pre", "tr", "table", "section", "article", "header", "footer", "figure", "figcaption", "dd", "dt",
}
DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "object", "svg")
TEASER_ENDINGS = ("…", "...", "[…]", "[...]", "read more", "continue reading", "read the full", "(more…)", "more »")
_WS = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANKS = re.compile(r"\n\s*\n+")
_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


_SUPERSCRIPT = str.maketrans("0123456789+-−", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻")
_SUBSCRIPT = str.maketrans("0123456789+-−", "₀₁₂₃₄₅₆₇₈₉₊₋₋")
_SCRIPT_NUMBER = re.compile(r"<(sup|sub)(?:\s[^>]*)?>\s*([-+−]?\d{1,4})\s*</\1\s*>", re.IGNORECASE)


def script_numbers(markup: str) -> str:
    """<sup>24</sup> as ²⁴ and <sub>2</sub> as ₂: flattened to text, "3.1 × 10<sup>24</sup>" read
    "3.1 × 1024" — a different number in a brief that must not invent one."""
    def written(match: re.Match) -> str:
        table = _SUPERSCRIPT if match.group(1).lower() == "sup" else _SUBSCRIPT
        return match.group(2).translate(table)
    return _SCRIPT_NUMBER.sub(written, markup)


def html_to_text(markup: str) -> str:
    """Readable text from an HTML fragment: paragraphs kept, scripts dropped, entities decoded."""
    if not markup or not markup.strip():
        return ""
    markup = script_numbers(markup)
    if "<" not in markup:
        return normalise_space(html.unescape(markup))
    try:
        root = lxml.html.fragment_fromstring(markup, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return normalise_space(html.unescape(re.sub(r"<[^>]+>", " ", markup)))
    for bad in root.iter(*DROP_TAGS):
        bad.drop_tree()
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.lower() in BLOCK_TAGS:
            element.tail = "\n\n" + (element.tail or "")
    return normalise_space(root.text_content())


def normalise_space(text: str) -> str:
    lines = (_WS.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def word_count(text: str) -> int:
    """Words, counting each CJK character as one (those scripts do not separate words by spaces)."""
    cjk = len(_CJK.findall(text))
    return len(_WORD.findall(_CJK.sub(" ", text))) + cjk


def looks_truncated(text: str) -> bool:
    tail = text.rstrip().lower()[-40:]
    return any(tail.endswith(ending) for ending in TEASER_ENDINGS)
