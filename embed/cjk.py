"""Chinese, Japanese and Korean text for keyword search: words are not separated by spaces, so
the keyword index cuts every run of CJK characters into character unigrams and bigrams (as
Lucene's CJKAnalyzer cuts bigrams; unigrams added so a one-character word still matches) and a
query is cut the same way. Latin-script words inside Chinese text ("DeepSeek", "H20") stay words.

Also how a text's script is told (`mostly_cjk`): search uses it to know which encoders a query's
language is covered by.
"""

from __future__ import annotations

import re

# Han (with extension A and the compatibility block), kana, Hangul syllables.
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u309f\u30a0-\u30ff\uac00-\ud7af]+")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def cjk_runs(text: str) -> list[str]:
    return _CJK_RUN.findall(text)


def grams(run: str) -> list[str]:
    """Unigrams then bigrams of one run: 美国芯片 -> 美 国 芯 片 美国 国芯 芯片."""
    return list(run) + [run[n:n + 2] for n in range(len(run) - 1)]


def cjk_grams(text: str) -> list[str]:
    """Every unigram and bigram of every CJK run of `text`, in order, repeats kept (term frequency)."""
    return [g for run in cjk_runs(text) for g in grams(run)]


def without_cjk(text: str) -> str:
    """`text` with its CJK runs replaced by spaces: what the Latin-script analyzer reads, so
    "DeepSeek发布V4" gives "deepseek" and "v4" rather than one long token."""
    return _CJK_RUN.sub(" ", text)


def has_cjk(text: str) -> bool:
    return _CJK_RUN.search(text) is not None


def mostly_cjk(text: str) -> bool:
    """More CJK characters than other letters: a Chinese query, even with "H20" or "Nvidia" in it."""
    cjk = sum(len(run) for run in cjk_runs(text))
    return cjk > 0 and cjk >= len(_LETTER.findall(without_cjk(text)))
