"""The summaries seam, built from settings at the edge, once:

    summaries = make_summaries(settings, encoder, sessions)
    card = summaries.card(story, persona)

`Summaries` holds the configured backend, the support check every output goes through, the
call log of the model calls, and the cache (the summaries table, when sessions are given). The
encoder is shared (one SentenceVectors memo) by the extractive backend, the fallback of the
generative ones, and the support check.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from digest.summary.base import StoryInput, Summarizer, SummarizerError, get_summarizer
from digest.summary.calls import CallLog
from digest.summary.grounding import DEFAULT_THRESHOLD, GroundingChecker
from digest.summary.schema import InsightCard, PodcastInsight, StoryBrief
from digest.summary.vectors import SentenceVectors, as_vectors
from embed.encoder import Encoder
from store.settings import Settings


@dataclass
class Summaries:
    """Every output goes through digest.summary.cache.summarise_story: looked up by the story's
    content hash first, else made by the backend, checked, and stored."""

    summarizer: Summarizer
    checker: GroundingChecker
    calls: CallLog
    sessions: sessionmaker[Session] | None = None
    made: int = 0  # outputs the backend was asked for (cache misses): what tests and benchmarks count

    def card(self, story: StoryInput, persona: str) -> InsightCard:
        return self.run(story, "card", persona)

    def story_brief(self, story: StoryInput) -> StoryBrief:
        return self.run(story, "story_brief")

    def podcast(self, story: StoryInput, limit: int = 3) -> list[PodcastInsight]:
        return self.run(story, "podcast_insights", limit=limit)

    def run(self, story: StoryInput, kind: str, persona: str = "", limit: int = 3):
        from digest.summary.cache import summarise_story

        return summarise_story(self, story, kind, persona, limit=limit)


def make_grounding(settings: Settings, vectors: SentenceVectors, judge=None) -> GroundingChecker:
    threshold = DEFAULT_THRESHOLD if settings.grounding_threshold is None else settings.grounding_threshold
    return GroundingChecker(vectors, threshold=threshold, judge=judge, mode=settings.grounding_mode)


def make_summaries(settings: Settings, encoder: Encoder | SentenceVectors,
                   sessions: sessionmaker[Session] | None = None, summarizer: Summarizer | None = None) -> Summaries:
    """The configured backend (or the given one) with its support check and call log (written to
    model_calls when sessions are given)."""
    vectors = as_vectors(encoder)
    calls = CallLog(sessions)
    if summarizer is None:
        summarizer = _backend(settings, vectors, calls)
    judge = None
    if settings.llm_judge and settings.summarizer == "openai":
        from digest.summary.generative import ChatJudge

        judge = ChatJudge(summarizer)
    return Summaries(summarizer, make_grounding(settings, vectors, judge), calls, sessions)


def _backend(settings: Settings, vectors: SentenceVectors, calls: CallLog) -> Summarizer:
    extractive = get_summarizer("extractive", encoder=vectors)
    common = dict(fallback=extractive, calls=calls, max_tokens=settings.llm_max_tokens,
                  context_words=settings.llm_context_words)
    if settings.summarizer == "extractive":
        return extractive
    if settings.summarizer == "openai":
        if not settings.llm_model:
            raise SummarizerError("summarizer=openai needs llm_model (BRIEFCAST_LLM_MODEL), the server's model name")
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return get_summarizer("openai", base_url=settings.llm_base_url, model=settings.llm_model, api_key=key,
                              timeout=settings.llm_timeout, max_concurrency=settings.llm_max_concurrency,
                              context_tokens=settings.llm_context_tokens, **common)
    if settings.summarizer == "llamacpp":
        return get_summarizer("llamacpp", gguf_path=settings.llm_gguf_path, n_ctx=settings.llm_n_ctx,
                              threads=settings.llm_threads, **common)
    return get_summarizer(settings.summarizer)  # raises with the list of backends
