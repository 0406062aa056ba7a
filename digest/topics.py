"""Topic profiles (TOML) and a story's relevance to one.

A profile names a topic and describes it: title, description, example texts, keywords, the
reader roles it is written for (personas: each with what it cares about, terms and example
sentences, so a card's takeaway can be chosen for it; a plain list of names is accepted too), and
the time zone and local send time of its daily brief (the scheduler reads those). `ai-geopolitics` ships inside the package (digest/topics/);
a user's profiles in `settings.topics_dir` are read first and win on a name clash.

Relevance is embedding similarity: the story's centroid against the description and each example
(the same encoder as the index, so the same space), half the best match plus half the mean, plus
a small boost per distinct keyword in the story's title and lead. An optional refiner (an LLM
judging "is this on topic?") may replace the embedding part; none is wired by default: the
extractive summariser has no model to ask, so the embedding score stands.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from digest.summary.base import Persona
from embed.encoder import Encoder
from store.settings import Settings

BUNDLED = Path(__file__).resolve().parent / "topics"
KEYWORD_BOOST = 0.05
MAX_KEYWORD_BOOST = 0.15


class TopicError(ValueError):
    """A topic that does not exist or whose profile cannot be used; the message says which and why."""


@dataclass(frozen=True)
class TopicProfile:
    name: str
    title: str
    description: str
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    personas: tuple[Persona, ...] = ()
    timezone: str = "UTC"
    send_time: str = "07:00"  # local HH:MM
    path: str = ""

    @property
    def persona_names(self) -> list[str]:
        return [p.name for p in self.personas]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def send_at(self) -> time:
        return time.fromisoformat(self.send_time)

    def texts(self) -> list[str]:
        return [self.description, *self.examples]


def _profile_dirs(settings: Settings) -> list[Path]:
    return [d for d in (settings.topics_dir, BUNDLED) if d is not None]


def parse_profile(path: Path) -> TopicProfile:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TopicError(f"cannot read topic profile {path}: {exc}") from None
    missing = [k for k in ("name", "description") if not isinstance(doc.get(k), str) or not doc[k].strip()]
    if missing:
        raise TopicError(f"topic profile {path} lacks {', '.join(missing)}")
    for key in ("examples", "keywords"):
        _check_strings(path, key, doc.get(key, []))
    profile = TopicProfile(
        name=doc["name"].strip(), title=str(doc.get("title") or doc["name"]).strip(),
        description=" ".join(doc["description"].split()),
        examples=tuple(doc.get("examples", [])), keywords=tuple(k.lower() for k in doc.get("keywords", [])),
        personas=_personas(path, doc.get("personas", [])),
        timezone=str(doc.get("timezone", "UTC")), send_time=str(doc.get("send_time", "07:00")), path=str(path),
    )
    _check_schedule(profile)
    return profile


def _check_strings(path: Path, key: str, value) -> None:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise TopicError(f"topic profile {path}: {key} must be a list of strings")


def _personas(path: Path, raw) -> tuple[Persona, ...]:
    """`personas = ["Policy Maker", ...]`, or `[[personas]]` tables with name, cares_about, terms, examples."""
    if not isinstance(raw, list):
        raise TopicError(f"topic profile {path}: personas must be a list of names or of [[personas]] tables")
    out: list[Persona] = []
    for entry in raw:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise TopicError(f"topic profile {path}: every persona needs a name")
        unknown = set(entry) - {"name", "cares_about", "terms", "examples"}
        if unknown:
            raise TopicError(f"topic profile {path}: persona {entry['name']!r} has unknown keys {sorted(unknown)}")
        for key in ("terms", "examples"):
            _check_strings(path, f"persona {entry['name']!r} {key}", entry.get(key, []))
        out.append(Persona(name=entry["name"].strip(), cares_about=" ".join(str(entry.get("cares_about", "")).split()),
                           terms=tuple(t.lower() for t in entry.get("terms", [])),
                           examples=tuple(entry.get("examples", []))))
    return tuple(out)


def _check_schedule(profile: TopicProfile) -> None:
    try:
        profile.zone
    except (ZoneInfoNotFoundError, ValueError):
        raise TopicError(f"topic profile {profile.path}: unknown time zone {profile.timezone!r}") from None
    try:
        profile.send_at
    except ValueError:
        raise TopicError(f"topic profile {profile.path}: send_time {profile.send_time!r} is not HH:MM") from None


def list_topics(settings: Settings) -> dict[str, TopicProfile]:
    """Every profile by name; the user's directory first, so its profiles win."""
    found: dict[str, TopicProfile] = {}
    for directory in _profile_dirs(settings):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            profile = parse_profile(path)
            found.setdefault(profile.name, profile)
    return found


def load_topic(settings: Settings, name: str) -> TopicProfile:
    topics = list_topics(settings)
    if name not in topics:
        raise TopicError(f"unknown topic {name!r}; available: {', '.join(sorted(topics)) or 'none'}")
    return topics[name]


# --- relevance --------------------------------------------------------------------------------

Refiner = Callable[[TopicProfile, str], float | None]  # an LLM's 0..1 judgement, or None: no opinion


@dataclass
class Relevance:
    score: float
    max_similarity: float
    mean_similarity: float
    keywords: list[str] = field(default_factory=list)
    refined: float | None = None

    def details(self) -> dict:
        return {"max_similarity": round(self.max_similarity, 4), "mean_similarity": round(self.mean_similarity, 4),
                "keywords": self.keywords, "keyword_boost": round(keyword_boost(self.keywords), 4),
                "refined": self.refined}


def keyword_boost(found: list[str]) -> float:
    return min(MAX_KEYWORD_BOOST, KEYWORD_BOOST * len(found))


class TopicScorer:
    """Scores stories against one profile; the profile's texts are embedded once."""

    def __init__(self, profile: TopicProfile, encoder: Encoder, refiner: Refiner | None = None) -> None:
        self.profile, self.refiner = profile, refiner
        self.vectors = encoder.embed_batch(profile.texts())
        self._patterns = [(k, re.compile(rf"(?<!\w){re.escape(k)}(?!\w)")) for k in profile.keywords]

    def keywords_in(self, text: str) -> list[str]:
        lowered = " ".join(text.lower().split())
        return [k for k, pattern in self._patterns if pattern.search(lowered)]

    def score(self, centroid: np.ndarray, text: str) -> Relevance:
        sims = self.vectors @ np.asarray(centroid, dtype=np.float32)
        best, mean = float(sims.max()), float(sims.mean())
        found = self.keywords_in(text)
        embedded = 0.5 * best + 0.5 * mean
        refined = self.refiner(self.profile, text) if self.refiner else None
        base = refined if refined is not None else embedded
        return Relevance(float(np.clip(base + keyword_boost(found), 0.0, 1.0)), best, mean, found, refined)
