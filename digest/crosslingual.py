"""What the story link reads of a Chinese (or Japanese) text: names, words, the lead.

English names are capitalised runs between spaces (digest.cluster.names_of); Chinese has neither
capitals nor spaces, so a Chinese text's names are

- the Latin-script names inside it ("DeepSeek", "H20", "HBM2E", "Meridian Labs"), cut out of the
  Chinese around them, lowercased as names_of lowercases them; and
- the Chinese names of a small, hand-written table (NAME_MAP) turned into the English name words
  an English report of the same event carries (英伟达 -> nvidia, 美国商务部 -> commerce department).
  The table lists real companies, agencies, places and products the AI-geopolitics topic names
  most; it is a starting list, not a translator: a name not in it simply does not count.

Its words are character bigrams of the Chinese runs (Chinese words are mostly two characters;
bigrams need no dictionary) plus the content words of its Latin runs. Bigrams only ever match
another Chinese text: across languages the names and the multilingual vectors carry the link.
"""

from __future__ import annotations

import re

from digest.summary.text import STOPWORDS, content_words

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LETTER = re.compile(r"[^\W\d_]")
# A Latin-script name inside Chinese text: a word of letters and digits, with inner - . +
# ("DeepSeek-V4", "Qwen3.5", "HBM2E"), and the capitalised words that follow it after a space
# ("Meridian Labs"). Only names count: a capital letter, or a digit with a letter (V4, 910C).
_LATIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9]*(?:[-.+][A-Za-z0-9]+)*")

CJK_SHARE = 0.3  # share of a text's letters that are CJK from which it is read as Chinese
CJK_CHARS_PER_WORD = 1.8  # a lead of N English words is about 1.8 N Chinese characters

# Chinese name -> the words of its usual English name, lowercased (as names_of gives them).
# Longer names first where one contains another (美国商务部 before 商务部, which is also China's).
NAME_MAP: dict[str, tuple[str, ...]] = {
    # companies and labs
    "英伟达": ("nvidia",), "华为": ("huawei",), "阿里巴巴": ("alibaba",), "阿里云": ("alibaba", "cloud"),
    "阿里": ("alibaba",), "腾讯": ("tencent",), "百度": ("baidu",), "字节跳动": ("bytedance",),
    "深度求索": ("deepseek",), "月之暗面": ("moonshot",), "智谱": ("zhipu",), "商汤": ("sensetime",),
    "寒武纪": ("cambricon",), "中芯国际": ("smic",), "长鑫存储": ("cxmt",), "长江存储": ("ymtc",),
    "台积电": ("tsmc",), "三星": ("samsung",), "海力士": ("hynix",), "美光": ("micron",),
    "阿斯麦": ("asml",), "英特尔": ("intel",), "超威": ("amd",), "微软": ("microsoft",), "谷歌": ("google",),
    "苹果公司": ("apple",), "苹果": ("apple",), "亚马逊": ("amazon",), "小米": ("xiaomi",), "联想": ("lenovo",),
    "抖音": ("douyin",), "微博": ("weibo",), "小红书": ("xiaohongshu",),
    # models and chips
    "通义千问": ("qwen",), "千问": ("qwen",), "昇腾": ("ascend",), "混元": ("hunyuan",), "文心": ("ernie",),
    "魔搭": ("modelscope",),
    # governments, agencies, laws
    "美国商务部": ("commerce", "department"), "工业与安全局": ("bureau", "industry", "security"),
    "工业和安全局": ("bureau", "industry", "security"), "白宫": ("white", "house"),
    "国家网信办": ("cyberspace", "administration"), "网信办": ("cyberspace", "administration"),
    "工信部": ("miit",), "欧盟": ("eu",), "欧盟委员会": ("european", "commission"),
    "数字服务法": ("digital", "services", "act"), "战略贸易法": ("strategic", "trade", "act"),
    "人工智能法": ("ai", "act"),
    # places
    "中国": ("china",), "日内瓦": ("geneva",), "马来西亚": ("malaysia",), "柔佛": ("johor",),
    "新加坡": ("singapore",), "荷兰": ("netherlands",), "日本": ("japan",), "韩国": ("korea",),
    "德国": ("germany",), "柏林": ("berlin",), "意大利": ("italy",), "法国": ("france",), "英国": ("britain",),
    "北京": ("beijing",), "上海": ("shanghai",), "杭州": ("hangzhou",), "深圳": ("shenzhen",),
    "台湾": ("taiwan",), "沙特": ("saudi",), "阿联酋": ("uae",), "华盛顿": ("washington",),
    # people
    "特朗普": ("trump",), "拜登": ("biden",), "黄仁勋": ("jensen", "huang"), "梁文锋": ("liang", "wenfeng"),
}
_MAP_PATTERN = re.compile("|".join(sorted(map(re.escape, NAME_MAP), key=len, reverse=True)))


LANGUAGE_NAMES = {"zh": "Chinese", "ja": "Japanese", "ko": "Korean", "de": "German", "fr": "French", "es": "Spanish",
                  "it": "Italian", "pt": "Portuguese", "ru": "Russian", "ar": "Arabic", "nl": "Dutch", "pl": "Polish",
                  "th": "Thai", "tr": "Turkish"}


def is_cjk(text: str) -> bool:
    """Whether a text is mostly Chinese/Japanese script (at least CJK_SHARE of its letters)."""
    letters = len(_LETTER.findall(text or ""))
    return letters > 0 and len(_CJK.findall(text)) >= CJK_SHARE * letters


def cjk_lead(text: str, words: int) -> str:
    """The first `words` English words' worth of a Chinese text."""
    return text[: int(words * CJK_CHARS_PER_WORD)]


def _latin_names(text: str) -> set[str]:
    found: set[str] = set()
    for match in _LATIN.finditer(text):
        word = match.group(0)
        if any(c.isupper() for c in word) or (any(c.isdigit() for c in word) and any(c.isalpha() for c in word)):
            lower = word.lower().strip(".-+")
            parts = lower.split("-") if "-" in lower else []  # "DeepSeek-V4": an English report may write "DeepSeek's V4"
            found.update(w for w in (lower, *parts) if w not in STOPWORDS and len(w) > 1)
    return found


def mapped_names(text: str) -> set[str]:
    """English name words of the Chinese names in the table that the text holds (longest match)."""
    return {word for match in _MAP_PATTERN.finditer(text) for word in NAME_MAP[match.group(0)]}


def cjk_names(text: str) -> frozenset[str]:
    """A Chinese text's names as English name words: its Latin-script names and its mapped names."""
    return frozenset(_latin_names(text) | mapped_names(text))


def cjk_words(text: str) -> frozenset[str]:
    """Character bigrams of the Chinese runs (a one-character run counts as itself) and the
    content words of the Latin text between them."""
    grams: set[str] = set()
    for run in _CJK_RUN.findall(text):
        grams.update(run[n:n + 2] for n in range(max(len(run) - 1, 1)))
    return frozenset(grams) | content_words(_CJK_RUN.sub(" ", text))
