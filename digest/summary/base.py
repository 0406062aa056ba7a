"""The `Summarizer` interface and its registry (like embed.encoder's): backends register by name.

A backend gets a story's passages (already chosen: the stories that can reach a brief) and
returns typed outputs whose every sentence cites passage ids. Grounding is checked after, by
digest.summary.grounding, whatever the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from digest.summary.schema import InsightCard, PodcastInsight, SourceRef, StoryBrief
from store.registry import Registry


class SummarizerError(RuntimeError):
    pass


@dataclass(frozen=True)
class PassageText:
    passage_id: int
    item_id: int
    text: str
    start: float | None = None
    end: float | None = None
    speaker: str | None = None
    position: int | None = None  # the passage's place in its item (0: the opening, with the lede)


@dataclass(frozen=True)
class Persona:
    """A reader role from the topic profile: what it cares about, in terms and example sentences.
    Cards are written for a persona only where the story has something that serves it better
    than the general reader's card."""

    name: str
    cares_about: str = ""
    terms: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()

    def texts(self) -> list[str]:
        """What the persona's interest is compared with: its examples, else what it cares about, else its name."""
        return list(self.examples) or [self.cares_about or self.name]


GENERAL_READER = ""  # the persona of a card written for no persona in particular


@dataclass
class StoryInput:
    """One story as a summariser sees it: its sources and their passages, most central first."""

    story_id: int
    title: str
    topic: str
    sources: list[SourceRef]
    passages: list[PassageText]
    topic_terms: list[str] = field(default_factory=list)  # the topic's keywords, to steer selection
    personas: list[Persona] = field(default_factory=list)  # the topic's reader roles (names are enough)

    def __post_init__(self) -> None:
        self.personas = [Persona(p) if isinstance(p, str) else p for p in self.personas]

    @property
    def persona_names(self) -> list[str]:
        return [p.name for p in self.personas]

    def persona(self, name: str) -> Persona | None:
        """The profile of a persona by name (case-insensitive); a name the topic does not profile
        (a subscriber's own) still gets a persona of that name alone."""
        if not name:
            return None
        found = next((p for p in self.personas if p.name.lower() == name.lower()), None)
        return found or Persona(name)

    def source_of(self, item_id: int) -> SourceRef | None:
        return next((s for s in self.sources if s.item_id == item_id), None)


class Summarizer(ABC):
    name: str  # the backend: extractive | openai | llamacpp | fake
    model: str = ""  # the model it runs, recorded with every output and model call
    fallback: Summarizer | None = None  # what writes an output this backend could not (generative: extractive)

    @abstractmethod
    def insight_card(self, story: StoryInput, persona: str) -> InsightCard:
        """Seed 000: summary, takeaway for the persona, insights, principles, in practice, topics..."""

    @abstractmethod
    def story_brief(self, story: StoryInput) -> StoryBrief:
        """Seed 001: the story from several sources with [n] citations and a glossary."""

    @abstractmethod
    def podcast_insights(self, episode: StoryInput, limit: int = 3) -> list[PodcastInsight]:
        """Seed 002: an episode's strongest insights, each citing its passage (with timestamps)."""


def _load_builtin_summarizers() -> None:
    from digest.summary import extractive, generative  # noqa: F401  importing registers them


SUMMARIZERS: Registry[Summarizer] = Registry("summarizer", SummarizerError, _load_builtin_summarizers)
register = SUMMARIZERS.register


def get_summarizer(name: str, **options) -> Summarizer:
    return SUMMARIZERS.create(name, **options)
