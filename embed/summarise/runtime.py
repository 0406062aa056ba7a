"""Build the summariser and its support check from settings (at the edge, once).

    summarizer = make_summarizer(settings, encoder, sessions)
    card = summarise_story(sessions, summarizer, story, "card", persona)

The encoder is shared (one SentenceVectors memo) by the extractive backend, the fallback of the
generative ones, and the support check; `summarizer.grounding` is the check summarise_story runs.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

import embed.summarise.extractive  # noqa: F401  registers "extractive"
import embed.summarise.llamacpp  # noqa: F401  registers "llamacpp" (llama_cpp loads only when built)
import embed.summarise.openai  # noqa: F401  registers "openai"
from embed.encoder import Encoder
from embed.summarise.base import Summarizer, SummarizerError, get_summarizer
from embed.summarise.calls import CallLog
from embed.summarise.grounding import DEFAULT_THRESHOLD, GroundingChecker
from embed.summarise.openai import ChatJudge
from embed.summarise.vectors import SentenceVectors
from store.settings import Settings


def make_grounding(settings: Settings, vectors: SentenceVectors, judge=None) -> GroundingChecker:
    threshold = DEFAULT_THRESHOLD if settings.grounding_threshold is None else settings.grounding_threshold
    return GroundingChecker(vectors, threshold=threshold, judge=judge, mode=settings.grounding_mode)


def make_summarizer(settings: Settings, encoder: Encoder | SentenceVectors,
                    sessions: sessionmaker[Session] | None = None) -> Summarizer:
    """The configured backend with `.grounding` (the support check) and `.calls` (its call log,
    written to model_calls when sessions are given)."""
    vectors = encoder if isinstance(encoder, SentenceVectors) else SentenceVectors(encoder)
    extractive = get_summarizer("extractive", encoder=vectors)
    calls = CallLog(sessions)
    common = dict(fallback=extractive, calls=calls, max_tokens=settings.llm_max_tokens,
                  context_words=settings.llm_context_words)
    if settings.summarizer == "extractive":
        summarizer = extractive
    elif settings.summarizer == "openai":
        if not settings.llm_model:
            raise SummarizerError("summarizer=openai needs llm_model (BRIEFCAST_LLM_MODEL), the server's model name")
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        summarizer = get_summarizer("openai", base_url=settings.llm_base_url, model=settings.llm_model, api_key=key,
                                    timeout=settings.llm_timeout, max_concurrency=settings.llm_max_concurrency,
                                    **common)
    elif settings.summarizer == "llamacpp":
        summarizer = get_summarizer("llamacpp", gguf_path=settings.llm_gguf_path, n_ctx=settings.llm_n_ctx,
                                    threads=settings.llm_threads, **common)
    else:
        summarizer = get_summarizer(settings.summarizer)  # raises with the list of backends
    judge = ChatJudge(summarizer) if settings.llm_judge and settings.summarizer == "openai" else None
    summarizer.grounding = make_grounding(settings, vectors, judge)
    summarizer.calls = getattr(summarizer, "calls", calls)
    return summarizer
