"""The extractive backend, post-only claims, the summaries cache and the factory (fake encoder)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from embed.encoder import get_encoder
from digest.summary.base import SummarizerError
from digest.summary.cache import summarise_story
from digest.summary.extractive import ExtractiveSummarizer, _defines
from digest.summary.grounding import GroundingChecker, label_unverified
from digest.summary.schema import InsightCard, Sentence, StoryBrief, from_dict, to_dict
from digest.summary.runtime import make_summaries
from digest.summary.budget import card_words, reading_minutes
from digest.summary.sentences import judge_sequence, source_sentences
from digest.summary.text import is_recommendation
from digest.summary.vectors import SentenceVectors
from store.db import open_database
from store.models import Summary
from store.settings import Settings
from tests import summarise_data

PERSONA = "Policy Maker"
CARD_FIELDS = ("summary", "key_takeaway", "key_insights", "principles", "in_practice")


@pytest.fixture(scope="module")
def vectors():
    return SentenceVectors(get_encoder("fake"))


@pytest.fixture(scope="module")
def summarizer(vectors):
    return ExtractiveSummarizer(vectors)


@pytest.fixture(scope="module")
def checker(vectors):
    return GroundingChecker(vectors)


@pytest.fixture
def story():
    return summarise_data.story()


def card_sentences(card: InsightCard) -> list[Sentence]:
    return [s for f in CARD_FIELDS for s in getattr(card, f)]


def shown_forms(story, passage_id: int) -> set[str]:
    """The passage's sentences as the sentence rules may show them (a dateline stripped, a connective
    dropped, a pronoun replaced by its predecessor's name)."""
    passage = next(p for p in story.passages if p.passage_id == passage_id)
    kind = story.source_of(passage.item_id).kind
    title = story.source_of(passage.item_id).title
    return {v.text for v in judge_sequence(source_sentences(passage.text), kind=kind, titles=[title]) if v.usable}


def assert_quoted(sentences, story):
    """Every sentence is a sentence of the passage it cites, as the sentence rules show it."""
    assert sentences
    for sentence in sentences:
        assert len(sentence.passage_ids) == 1
        assert sentence.text in shown_forms(story, sentence.passage_ids[0])


def test_card_fields_are_cited_source_sentences(summarizer, checker, story):
    card = checker.check(summarizer.insight_card(story, PERSONA), story)
    assert_quoted(card_sentences(card), story)
    assert 2 <= len(card.summary) <= 4 and len(card.key_takeaway) == 1 and 2 <= len(card.key_insights) <= 4
    assert all(is_recommendation(s.text) for s in card.in_practice)
    assert not {s.text for s in card.in_practice} & {s.text for s in card.key_takeaway}
    assert card.persona in ("", PERSONA) and set(card.best_for) <= set(story.persona_names) and card.best_for
    assert any(t.lower().startswith("export control") for t in card.topics)  # a topic term the story mentions
    lowered = [t.lower() for t in card.topics]
    assert not [(a, b) for a in lowered for b in lowered if a != b and a in b]  # no "chip" beside "chips"
    assert card.attribution.startswith("Original articles published by Silicon Frontier, Policy Wire")
    assert "forum user" not in card.attribution  # posts are not the original reporting
    assert card_words(card) <= 250 and card.reading_minutes == reading_minutes(card_words(card))  # the card's own
    assert all(s.support is not None and s.support >= checker.threshold for s in card_sentences(card))
    assert {s.item_id for s in card.sources} | {s.item_id for s in card.related} == {s.item_id for s in story.sources}


def test_takeaway_is_advice_when_the_story_gives_some(summarizer, story):
    card = summarizer.insight_card(story, PERSONA)
    assert is_recommendation(card.key_takeaway[0].text)


def test_the_post_only_rumour_is_unverified_never_an_insight(summarizer, checker, story):
    card = checker.check(summarizer.insight_card(story, PERSONA), story)
    brief = checker.check(summarizer.story_brief(story), story)
    shown = [s.text for s in card_sentences(card)] + [s.text for p in brief.paragraphs for s in p]
    assert not any("Shenzhen" in text for text in shown)
    rumours = [s for s in card.unverified_claims if "Shenzhen" in s.text]
    assert rumours and all(s.unverified for s in rumours)
    assert any("Shenzhen" in s.text and s.unverified for s in brief.unverified_claims)
    # A post that an article confirms is not a rumour.
    assert not any("which is wild" in s.text for s in card.unverified_claims + brief.unverified_claims)


def test_label_unverified(checker, story):
    rumour = Sentence("The Shenzhen distillation paper relies on a training-time attack vector nobody in the "
                      "west has patched.", [2200])
    confirmed = Sentence("Lumen-3 matches Atlas-5 on several reasoning benchmarks with a tenth of the training "
                         "compute.", [2300])
    reported = Sentence("Nine Chinese entities were added to the Entity List.", [1200])
    labelled = label_unverified([rumour, confirmed, reported], story, checker)
    assert [s.unverified for s in labelled] == [True, False, False]
    assert labelled[1].passage_ids[0] == 2300 and labelled[1].passage_ids[1] // 100 == 11  # the article added
    assert labelled[2] == reported
    assert [s.unverified for s in label_unverified([rumour, confirmed], story)] == [True, True]  # no checker


def test_a_story_told_only_by_posts_gives_an_unverified_card(summarizer, checker):
    posts_only = summarise_data.story(kinds={"post"})
    card = checker.check(summarizer.insight_card(posts_only, PERSONA), posts_only)
    assert card.unverified
    assert all(s.unverified for s in card_sentences(card))


def test_story_brief_from_several_sources_with_glossary(summarizer, checker, story):
    brief = checker.check(summarizer.story_brief(story), story)
    sentences = [s for p in brief.paragraphs for s in p]
    assert_quoted(sentences, story)
    cited_items = {pid // 100 for s in sentences for pid in s.passage_ids}
    assert len(cited_items) >= 3
    assert brief.label.startswith("Editorial perspective - synthesised analysis")
    terms = {g.term for g in brief.glossary}
    assert 1 <= len(terms) <= 3 and terms & {"HBM", "XH-3", "HardReason-2", "Lumen-3", "Entity List"}
    assert len({g.definition.text for g in brief.glossary}) == len(terms)  # one sentence defines one term
    for entry in brief.glossary:
        assert entry.term in entry.definition.text and entry.definition.passage_ids
        assert _defines(entry.definition.text, entry.term)  # it says what the term is
    assert brief.reading_minutes >= 1 and [s.item_id for s in brief.sources] == [s.item_id for s in story.sources]


def test_podcast_insights_link_their_timestamps(summarizer, checker):
    episode = summarise_data.episode()
    insights = checker.check(summarizer.podcast_insights(episode, limit=2), episode)
    assert len(insights) == 2
    passages = {p.passage_id: p for p in episode.passages}
    for insight in insights:
        cited = passages[insight.insight.passage_ids[0]]
        assert insight.insight.text in cited.text
        assert (insight.episode.start, insight.episode.end) == (cited.start, cited.end)
        assert insight.episode.kind == "episode" and insight.story_id == episode.story_id
    assert "Welcome back" not in " ".join(i.insight.text for i in insights)  # too short to be an insight


def test_injected_instructions_never_reach_the_extractive_output(summarizer, checker):
    story = summarise_data.injected_story()
    card = checker.check(summarizer.insight_card(story, PERSONA), story)
    brief = checker.check(summarizer.story_brief(story), story)
    dumped = json.dumps([to_dict(card), to_dict(brief)])
    assert "HACKED" not in dumped and "instructions" not in dumped.lower()
    assert "Ferrite" in dumped  # the rest of that article is still usable


def test_outputs_round_trip(summarizer, story):
    card = summarizer.insight_card(story, PERSONA)
    brief = summarizer.story_brief(story)
    assert from_dict(InsightCard, json.loads(json.dumps(to_dict(card)))) == card
    assert from_dict(StoryBrief, json.loads(json.dumps(to_dict(brief)))) == brief


def test_summaries_are_cached_by_story_content(tmp_path, story):
    sessions = open_database(f"sqlite:///{tmp_path / 'b.db'}")
    summaries = make_summaries(Settings(encoder="fake", data_dir=tmp_path), get_encoder("fake"), sessions)
    first = summaries.run(story, "card", PERSONA)
    again = summaries.run(story, "card", PERSONA)
    assert again == first and summaries.made == 1
    summaries.run(story, "card", "Investor")  # another persona: another row
    brief = summaries.run(story, "story_brief")
    assert summaries.run(story, "story_brief") == brief
    pods = summaries.run(summarise_data.episode(), "podcast_insights", limit=2)
    assert summaries.run(summarise_data.episode(), "podcast_insights", limit=2) == pods
    assert summaries.made == 4
    changed = summarise_data.story()
    changed.passages[0] = type(changed.passages[0])(**{**changed.passages[0].__dict__, "text": "Different text."})
    summaries.run(changed, "card", PERSONA)
    assert summaries.made == 5
    with sessions() as session:
        rows = session.scalars(select(Summary).order_by(Summary.id)).all()
        assert [(r.kind, r.persona, r.backend) for r in rows[:2]] == [("card", PERSONA, "extractive"),
                                                                       ("card", "Investor", "extractive")]
        assert len(rows) == 5 and rows[0].story_id is None  # no stories row here: the link stays empty
        assert session.scalar(select(func.count()).select_from(Summary).where(Summary.kind == "podcast_insights")) == 1
    with pytest.raises(ValueError, match="kind must be"):
        summaries.run(story, "poem")


def test_factory(tmp_path):
    fake = get_encoder("fake")
    summaries = make_summaries(Settings(data_dir=tmp_path), fake)
    assert summaries.summarizer.name == "extractive" and summaries.checker.threshold > 0
    assert make_summaries(Settings(data_dir=tmp_path, grounding_threshold=0.9), fake).checker.threshold == 0.9
    with pytest.raises(SummarizerError, match="llm_model"):
        make_summaries(Settings(data_dir=tmp_path, summarizer="openai"), fake)
    with pytest.raises(SummarizerError, match="unknown summarizer 'gpt'.*extractive"):
        make_summaries(Settings(data_dir=tmp_path, summarizer="gpt"), fake)
    with pytest.raises(SummarizerError, match="no GGUF model file"):
        make_summaries(Settings(data_dir=tmp_path, summarizer="llamacpp", llm_gguf_path=str(tmp_path / "x.gguf")), fake)
    openai = make_summaries(Settings(data_dir=tmp_path, summarizer="openai", llm_model="m", llm_judge=True), fake)
    assert openai.summarizer.name == "openai" and openai.checker.judge is not None
    assert openai.summarizer.fallback.name == "extractive"


def test_backends_keep_heavy_imports_lazy():
    import subprocess
    import sys

    code = ("import sys; from digest.summary.runtime import make_summaries; from embed.encoder import get_encoder; "
            "from store.settings import Settings; make_summaries(Settings(), get_encoder('fake')); "
            "print(sorted(m for m in ('llama_cpp', 'torch', 'sentence_transformers', 'spacy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_different_support_check_is_a_cache_miss(tmp_path, story):
    sessions = open_database(f"sqlite:///{tmp_path / 'b.db'}")
    fake = get_encoder("fake")
    strict = make_summaries(Settings(data_dir=tmp_path, grounding_threshold=0.99), fake, sessions)
    lenient = make_summaries(Settings(data_dir=tmp_path, grounding_threshold=0.1), fake, sessions)
    strict.run(story, "card", PERSONA)
    lenient.run(story, "card", PERSONA)
    lenient.run(story, "card", PERSONA)
    assert (strict.made, lenient.made) == (1, 1)
    with sessions() as session:
        assert len(session.scalars(select(Summary)).all()) == 2
