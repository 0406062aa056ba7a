"""Sentences fit to stand alone: the rules every sentence of a brief passes, whatever wrote it.

A source sentence read out of its article often leans on what came before it ("It's a
training-capable chip...", "And the new part is..."), carries the article's furniture
("WASHINGTON — ...", a headline glued to its subheading) or is cut in half (a quote split at
its full stop). A brief quotes sentences one at a time, so each is judged here, with its source
predecessor at hand:

- cleaned: a dateline is stripped; a headline glued to the text after it is cut off; a hedge
  ("I think that ...") is dropped when what follows is a whole clause;
- rewritten by rules a test can pin: an opening connective ("And", "But", "However,") is dropped;
  "This rule ..." becomes "The rule ..."; a pronoun subject ("It", "They", "She", "Its") is
  replaced by the name the predecessor's subject gives, when it gives one;
- otherwise usable only right after its predecessor (`needs_previous`): "Most of them ...",
  "That is why ...";
- or not at all, with the reason: a question, podcast filler (intros, sign-offs, ad breaks, the
  episode's menu), a verbless fragment, a quote left open, first-person talk whose speaker the
  reader does not know, text addressed to a model, not English, too short or too long.

The parse is spaCy's (digest.summary.language); the rules are plain code over it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from digest.summary.language import Parse, english
from digest.summary.text import addresses_model, is_question, split_sentences, word_count

MIN_WORDS, MAX_WORDS = 6, 45
# What a reader cannot place without the sentence before (the brief_counts list, and its kin).
ANAPHORIC_OPENERS = frozenset("""it its they their them this that these those he she his her him which then
                               such there""".split())
CONNECTIVES = frozenset("""and but so also however still yet meanwhile plus besides moreover furthermore
                        instead otherwise thus therefore hence indeed anyway now though although nevertheless
                        nonetheless likewise similarly additionally again""".split())
# Enumerations read as connectives when a comma follows: "Second, less than a day later, ..."
ORDINALS = frozenset("first second third fourth fifth finally lastly next secondly thirdly".split())
_PERSONAL = frozenset({"he", "she", "him", "her", "his", "hers"})
_NEUTER = frozenset({"it", "its"})
_PLURAL = frozenset({"they", "them", "their", "theirs"})
_DEMONSTRATIVE = frozenset({"this", "that", "these", "those"})
# A speaker the reader does not know ("We benchmarked..."); "you" is the reader, and may stay.
_FIRST_PERSON = frozenset({"i", "we", "me", "us", "my", "our"})
_SUBJECT_TAGS_PLURAL = frozenset({"NNS", "NNPS"})

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_WIRE = r"\((?:Reuters|AP|AFP|CNN|CNBC|Bloomberg|Xinhua|BBC|UPI|dpa|IANS|PTI|ANI|The Guardian)\)"
# "WASHINGTON — ", "HANGZHOU, China — ", "SAN FRANCISCO, Dec. 1 (Reuters) - ", "London (CNN) — ", "(CNN) — "
_DATELINE = re.compile(
    rf"^\s*(?!(?:FILE|PHOTO|IMAGE|VIDEO|WATCH|LISTEN)\b)(?:"
    rf"[A-Z][A-Z.'’]+(?:[ -][A-Z][A-Z.'’]+)*(?:,\s*[A-Z][\w.'’]*(?:\s[A-Z][\w.'’]*)*)?(?:,?\s+{_MONTH}\s+\d{{1,2}})?"
    rf"\s*(?:{_WIRE})?\s*(?:—|–|--|-)\s*"
    rf"|(?:[A-Z][\w.'’]*(?:\s[A-Z][\w.'’]*){{0,3}}(?:,\s*{_MONTH}\s+\d{{1,2}})?\s*)?{_WIRE}\s*(?:—|–|--|-|:)?\s*"
    rf")(?=[\"“‘A-Z0-9])")
_HEDGE = re.compile(r"^(?:(?:and|but|so),?\s+)?(?:I|we)\s+(?:think|believe|would argue|'d argue|suspect|guess|feel)"
                    r"(?:\s+that)?\s+|^(?:my|our)\s+(?:sense|view|take|guess|bet)\s+is\s+(?:that\s+)?", re.IGNORECASE)
_CONNECTIVE = re.compile(r"^(?P<word>[A-Za-z]+)\b(?P<comma>,)?\s+(?=\S)")
# A headline run into its subheading: "...as obligations start to bite The guidance spells out ..."
_GLUED = re.compile(r"\b[a-z][a-z0-9'’-]*\s+(?:The|A|An|This|These|In|On|At|For|After|Before|When|While|As|With)\s+[a-z]")
# Podcast furniture: intros, sign-offs, ad breaks, calls to subscribe, the host's small talk.
_FILLER = re.compile(
    r"\bwelcome (?:back )?to\b|\b(?:i'?m|i am) your host\b|\bthis is (?:episode|the \w+ (?:podcast|show))\b"
    r"|\bthanks? (?:you )?(?:so much )?for (?:listening|joining|having|tuning|coming on|being here)\b"
    r"|\bsee you (?:next|in|on|then|soon)\b|\bthat'?s (?:all|it) for (?:today|this week|now)\b"
    r"|\bwe'?ll be (?:right )?back\b|\bafter the break\b|\bstay tuned\b|\bright after this\b"
    r"|\b(?:subscribe|rate and review|leave (?:us )?a review|wherever you get your podcasts)\b"
    r"|\bjoining (?:me|us)\b|\bmy (?:guest|co-?host)\b|\blet'?s (?:get|dive|jump|go) (?:into|in|started|to)\b"
    r"|\bsponsored by\b|\bour sponsor\b|\b(?:good|great) question\b|\bsend this page to\b|\bsign up for\b",
    re.IGNORECASE)
_EPISODE_MENU = re.compile(r"^(?:today|this week|tonight|coming up|on (?:today'?s|this) (?:show|episode)|in this episode)\b",
                           re.IGNORECASE)
_CROSS_REFERENCE = re.compile(r"^\W*(?:also see|see also|related:|read more|more:)\b", re.IGNORECASE)
# Page furniture: photo captions and credits ("FILE - Carlos Watson participates in ...", "(AP Photo/...)").
_CAPTION = re.compile(r"^\W*(?:FILE|PHOTO|IMAGE|VIDEO|WATCH|LISTEN)\b|\((?:AP|Reuters|AFP|Getty) (?:Photo|Images)\b|"
                      r"\bPhoto(?:graph)?: |\bImage credit\b")
_AUDIENCE = frozenset("people listeners everyone everybody folks audience us me you".split())
_DISFLUENCY = re.compile(r"\b(?:you know|i mean|kind of|sort of|um+|uh+|like,)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """One source sentence, judged: `text` is what may be shown (after the rewrites)."""

    text: str
    fit: bool  # may be shown on its own
    needs_previous: bool = False  # may be shown only right after its source predecessor
    reason: str = ""  # why it may not be shown at all
    rewrites: tuple[str, ...] = field(default=())  # the rules applied: dateline, title, hedge, connective, ...

    @property
    def usable(self) -> bool:
        return self.fit or self.needs_previous


def source_sentences(text: str) -> list[str]:
    """A passage's sentences, a quote split at its inner full stops put back together."""
    out: list[str] = []
    pending = ""
    for piece in split_sentences(text):
        pending = f"{pending} {piece}" if pending else piece
        if quotes_balanced(pending) or pending.count(" ") > 90:
            out.append(pending)
            pending = ""
    if pending:
        out.append(pending)
    return out


def quotes_balanced(text: str) -> bool:
    return text.count('"') % 2 == 0 and text.count("\u201c") == text.count("\u201d")


def strip_dateline(text: str) -> str:
    return _capitalise(_DATELINE.sub("", text, count=1))


def strip_title(text: str, titles: Sequence[str]) -> str:
    """A headline glued to the sentence after it (no full stop between) is cut off."""
    for title in titles:
        words = re.findall(r"[\w'’.-]+", title)
        if len(words) < 3:
            continue
        pattern = r"^\W*" + r"\W+".join(re.escape(w) for w in words) + r"[\s:.|—–-]*(?=[A-Z“\"])"
        match = re.match(pattern, text)
        if match and word_count(text[match.end():]) >= MIN_WORDS:
            return text[match.end():]
    return text


def glued(text: str) -> bool:
    """A headline run into the next sentence without punctuation (the tell-tale " bite The ")."""
    return bool(_GLUED.search(text))


def is_filler(text: str, kind: str) -> bool:
    if _FILLER.search(text):
        return True
    if kind == "episode":
        return bool(_EPISODE_MENU.match(text)) or len(_DISFLUENCY.findall(text)) >= 2
    return False


def is_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) / len(letters) >= 0.8


def _capitalise(text: str) -> str:
    text = text.lstrip()
    for n, ch in enumerate(text):
        if ch.isalpha():
            return text[:n] + ch.upper() + text[n + 1:]
        if ch not in "\"“‘'(":
            break
    return text


# --- judging ---------------------------------------------------------------------------------------


def judge_sequence(sentences: Sequence[str], *, kind: str = "article", titles: Sequence[str] = ()) -> list[Verdict]:
    """Each sentence of one source passage, in order, judged with its predecessor at hand."""
    nlp = english()
    prepared = [_clean(s, titles) for s in sentences]
    parses = nlp.parse_many([text for text, _ in prepared] + list(sentences))
    cleaned_parses, raw_parses = parses[: len(sentences)], parses[len(sentences):]
    out: list[Verdict] = []
    for n, ((text, rewrites), parse) in enumerate(zip(prepared, cleaned_parses)):
        previous = raw_parses[n - 1] if n > 0 else None
        out.append(_judge(text, rewrites, parse, previous, kind))
    return out


def judge_one(text: str, *, kind: str = "article", titles: Sequence[str] = (), previous: str | None = None) -> Verdict:
    """One sentence on its own (a model's sentence), optionally with the sentence before it."""
    if previous is None:
        return judge_sequence([text], kind=kind, titles=titles)[0]
    return judge_sequence([previous, text], kind=kind, titles=titles)[1]


def _clean(text: str, titles: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    rewrites: list[str] = []
    text = " ".join(text.split())
    for rule, step in (("dateline", strip_dateline), ("title", lambda t: strip_title(t, titles)),
                       ("hedge", _strip_hedge), ("connective", _strip_connective)):
        changed = step(text)
        if changed != text:
            rewrites.append(rule)
            text = changed
    return text, tuple(rewrites)


def _strip_hedge(text: str) -> str:
    match = _HEDGE.match(text)
    return _capitalise(text[match.end():]) if match else text


def _strip_connective(text: str) -> str:
    """Drops opening connectives, stacked ones too ("So and ...")."""
    for _ in range(3):
        stripped = _strip_one_connective(text)
        if stripped == text:
            break
        text = stripped
    return text


def _strip_one_connective(text: str) -> str:
    match = _CONNECTIVE.match(text)
    word = match.group("word").lower() if match else ""
    if not match or not (word in CONNECTIVES or word in ORDINALS and match.group("comma")):
        return text
    if match.group("word").lower() in ("now", "again", "still") and not match.group("comma"):
        return text  # "Now is the time", "Still waters": only "Now, ..." is a connective
    return _capitalise(text[match.end():])


def _reject(text: str, reason: str, rewrites: tuple[str, ...]) -> Verdict:
    return Verdict(text, fit=False, reason=reason, rewrites=rewrites)


def _judge(text: str, rewrites: tuple[str, ...], parse: Parse, previous: Parse | None, kind: str) -> Verdict:
    surface = _surface_problem(text, kind)
    if surface:
        return _reject(text, surface, rewrites)
    if not parse.has_verb:
        return _reject(text, "fragment", rewrites)
    subject = parse.subject
    first = parse.tokens[0].lower if parse.tokens else ""
    if first in ("which", "who", "whom", "whose", "where"):
        return _reject(text, "orphan", rewrites)
    if subject is not None and parse.tokens[subject].lower in _FIRST_PERSON:
        return _reject(text, "first-person", rewrites)
    if kind == "episode" and _addresses_audience(parse):
        return _reject(text, "filler", rewrites)
    resolved = _resolve_opening(parse, previous)
    if resolved is not None:
        text, rule = resolved
        rewrites = (*rewrites, rule)
    elif _leans_on_previous(parse):
        return Verdict(text, fit=False, needs_previous=previous is not None, reason="orphan", rewrites=rewrites)
    if not MIN_WORDS <= word_count(text) <= MAX_WORDS:
        return _reject(text, "length", rewrites)
    return Verdict(text, fit=True, rewrites=rewrites)


def _surface_problem(text: str, kind: str) -> str:
    if addresses_model(text):
        return "model"
    if not is_english(text):
        return "language"
    if is_question(text):
        return "question"
    if is_filler(text, kind):
        return "filler"
    if not quotes_balanced(text):
        return "quote"
    if text.startswith("(") and text.rstrip(".").endswith(")") or _CROSS_REFERENCE.match(text):
        return "aside"
    if _CAPTION.search(text):
        return "caption"
    if glued(text):
        return "glued"
    if word_count(text) < MIN_WORDS:
        return "length"
    return ""


def _addresses_audience(parse: Parse) -> bool:
    """A host's instruction to the listeners or a guest ("Remind people where we are with the AI
    Act.", "Tell us what changed."): an imperative opening whose object is the audience. Only in
    episodes: an article's imperative is usually advice ("Map your obligations now.")."""
    first = parse.tokens[0] if parse.tokens else None
    if first is None or first.tag != "VB" or parse.subject is not None:
        return False
    return any(t.lower in _AUDIENCE and t.head == 0 for t in parse.tokens[1:])


def _leans_on_previous(parse: Parse) -> bool:
    """The opening word, a demonstrative pronoun ("to do exactly that") or a pronoun with no noun
    before it to refer to ("Most of them ..."), points back."""
    words = [i for i, t in enumerate(parse.tokens) if t.pos != "PUNCT"]
    if not words:
        return False
    first = words[0]  # past an opening quote: a speaker's "This" points back too
    if parse.tokens[first].lower in ANAPHORIC_OPENERS and not _expletive(parse, first):
        return True
    return any(_dangling(parse, i) for i in range(len(parse.tokens)))


_THIRD_PERSON = _PERSONAL | _NEUTER | _PLURAL
_NOT_ANTECEDENTS = frozenset({"DATE", "TIME", "CARDINAL", "ORDINAL", "PERCENT", "MONEY", "QUANTITY"})


# "this week" points at the calendar, not at an earlier sentence.
_TIME_NOUNS = frozenset("""week weekend month year day morning afternoon evening night quarter season spring summer
                        autumn fall winter time decade century hour minute moment""".split())
# "The move, announced ...": an event the previous sentence named.
_EVENT_NOUNS = frozenset("""move decision step announcement episode development change shift deal plan measure
                         effort approach""".split())


def _dangling(parse: Parse, i: int) -> bool:
    """A demonstrative ("to do exactly that", "ten times that compute"), a definite event noun as
    subject ("The move ..."), or a third-person pronoun with no noun before it in the sentence."""
    token = parse.tokens[i]
    if token.lower in _DEMONSTRATIVE and token.pos == "PRON" and token.tag == "DT":
        return True
    if token.lower in _DEMONSTRATIVE and token.dep == "det" and parse.tokens[token.head].lower not in _TIME_NOUNS:
        return True
    if token.dep in ("nsubj", "nsubjpass") and token.lower in _EVENT_NOUNS and any(
            parse.tokens[c].lower == "the" for c in parse.children(i)):
        return True
    if token.lower not in _THIRD_PERSON or token.pos not in ("PRON", "DET") or _expletive(parse, i):
        return False
    return not any(t.pos in ("NOUN", "PROPN") and (parse.entity_at(n) is None or parse.entity_at(n).label
                                                   not in _NOT_ANTECEDENTS)
                   for n, t in enumerate(parse.tokens[:i]))


def _expletive(parse: Parse, i: int) -> bool:
    """"It is hard to ...", "It was clear that ...", "There are ...": no antecedent needed."""
    token = parse.tokens[i]
    if token.dep == "expl":
        return True
    if token.lower != "it" or i + 2 >= len(parse.tokens):
        return False
    verb, after = parse.tokens[i + 1], parse.tokens[i + 2:i + 6]
    return verb.lower in ("is", "was", "'s", "seems", "seemed", "remains") and any(
        t.lower in ("to", "that", "whether", "how", "why", "what") for t in after) and any(
        t.pos == "ADJ" for t in after)


# --- rewrites that give a sentence its own subject -------------------------------------------------


def _resolve_opening(parse: Parse, previous: Parse | None) -> tuple[str, str] | None:
    """The sentence with its opening demonstrative or pronoun replaced, or None if no rule applies."""
    tokens = parse.tokens
    if not tokens:
        return None
    first = tokens[0]
    if first.lower in _DEMONSTRATIVE and first.pos == "DET" and first.dep == "det" and tokens[first.head].pos == "NOUN":
        return _replace(parse, 0, "The"), "demonstrative"
    if previous is None or first.lower not in _PERSONAL | _NEUTER | _PLURAL or _expletive(parse, 0):
        return None
    if first.dep not in ("nsubj", "nsubjpass", "poss"):
        return None
    name = _antecedent(first.lower, previous)
    if name is None:
        return None
    if first.tag == "PRP$" or first.lower in ("its", "their", "his", "her") and first.dep == "poss":
        return _replace(parse, 0, name + ("'" if name.endswith("s") else "'s")), "pronoun"
    return _replace_subject(parse, name), "pronoun"


def _replace(parse: Parse, i: int, new: str) -> str:
    token = parse.tokens[i]
    return parse.text[: token.start] + new + parse.text[token.start + len(token.text):]


_CONTRACTIONS = {"'s": "is", "'re": "are", "'ve": "have", "'ll": "will", "'d": "would"}


def _replace_subject(parse: Parse, name: str) -> str:
    """"It's" -> "<name> is" ("has" before a past participle), "They're" -> "<name> are"."""
    tokens = parse.tokens
    clitic = tokens[1].text.replace("’", "'") if len(tokens) > 1 else ""
    if clitic in _CONTRACTIONS:
        word = _CONTRACTIONS[clitic]
        if clitic in ("'s", "'d") and len(tokens) > 2 and tokens[2].tag == "VBN":
            word = "has" if clitic == "'s" else "had"
        end = tokens[1].start + len(tokens[1].text)
        return f"{name} {word}{parse.text[end:]}"
    return _replace(parse, 0, name)


_THING_LABELS = frozenset({"ORG", "PRODUCT", "LAW", "WORK_OF_ART", "FAC", "GPE", "EVENT"})


def _antecedent(pronoun: str, previous: Parse) -> str | None:
    """The one name in the predecessor that the pronoun can refer to: its subject, and nothing
    else of the pronoun's kind in that sentence. Anything ambiguous is left alone (the sentence
    then needs its predecessor), since a wrong name would be an invented claim."""
    subject = previous.subject
    if subject is None:
        return None
    head = previous.tokens[subject]
    if pronoun in _PERSONAL:
        people = list(dict.fromkeys(e.text for e in previous.entities if e.label == "PERSON"))
        at_subject = previous.entity_at(subject)
        return people[0] if len(people) == 1 and at_subject is not None and at_subject.text == people[0] else None
    if pronoun in _NEUTER:
        things = _things(previous)
        at_subject = previous.entity_at(subject)
        name = _strip_article(at_subject.text) if at_subject is not None and at_subject.label in _THING_LABELS else (
            _proper_run(previous, subject) if head.tag == "NNP" else None)
        return name if name is not None and things == {name} else None
    plural = [i for i, t in enumerate(previous.tokens) if t.tag in _SUBJECT_TAGS_PLURAL and t.dep != "compound"]
    if plural == [subject] and head.pos in ("NOUN", "PROPN"):
        return _noun_phrase(previous, subject)
    return None


def _things(parse: Parse) -> set[str]:
    """Every non-person name in a sentence: entities, and proper nouns the tagger saw outside them."""
    names = {_strip_article(e.text) for e in parse.entities if e.label in _THING_LABELS}
    for i, token in enumerate(parse.tokens):
        if token.tag == "NNP" and parse.entity_at(i) is None and token.dep != "compound":
            names.add(_proper_run(parse, i))
    return names


def _strip_article(text: str) -> str:
    return re.sub(r"^(?:the|The)\s+", "", text)


def _proper_run(parse: Parse, head: int) -> str:
    """The compound proper noun ending at `head` ("Corvane Semiconductor")."""
    start = head
    while start > 0 and parse.tokens[start - 1].tag in ("NNP", "NNPS") and parse.tokens[start - 1].head == head:
        start -= 1
    return "".join(t.text + t.ws for t in parse.tokens[start:head + 1]).strip()


def _noun_phrase(parse: Parse, head: int) -> str | None:
    """The subject's noun phrase without determiners, clauses or appositions ("Chinese AI labs")."""
    keep = [i for i in parse.subtree(head) if i <= head and parse.tokens[i].dep in ("amod", "compound", "nmod")
            or i == head]
    start = keep[0]
    if any(i not in keep for i in range(start, head + 1)) or head - start > 4:
        return None
    return "".join(t.text + t.ws for t in parse.tokens[start:head + 1]).strip()
