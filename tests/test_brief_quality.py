"""The brief-quality gate (digest/quality.py, benchmarks/brief_quality.py): the counts a reader
trips over are pinned at zero on the sample world's brief as `make run` makes it (real encoder)
and on cards built from corpus texts nobody here wrote, within the seeds' budgets; the counter
itself is checked on sentences that do trip a reader and on the seeds, written by people."""

from __future__ import annotations

import pytest

from digest.quality import count_brief, count_cards, count_fields
from digest.summary.budget import BRIEF_WORDS, CARD_WORDS
from digest.summary.schema import Sentence
from tests.conftest import CORPUS
from tests.email_helpers import sample_brief

ZERO = ("orphaned_openings", "datelines", "unbalanced_quotes", "glued_titles", "fragments", "repeated")
# Measured on the corpus cards (docs/benchmarks.md, "Brief quality"); may only go down.
CORPUS_ORPHANS_AT_MOST = 1


def test_the_counter_sees_what_trips_a_reader():
    bad = [Sentence("WASHINGTON — Meridian Labs accused Beiming of distilling Atlas-5.", [1]),
           Sentence("It's a training-capable chip that's mediocre at inference.", [2]),
           Sentence('Suing a Beijing company is another matter," said a trade lawyer.', [3]),
           Sentence("EU AI Office publishes guidance as obligations start to bite The guidance spells it out.", [4]),
           Sentence("Lumen-3 hands-on: the weights, the licence and the quirks.", [5]),
           Sentence("WASHINGTON — Meridian Labs accused Beiming of distilling Atlas-5.", [1])]
    counts = count_fields([bad[:3], bad[3:]])
    assert (counts.orphaned_openings, counts.datelines, counts.unbalanced_quotes, counts.glued_titles,
            counts.fragments, counts.repeated) == (1, 2, 1, 1, 1, 1)
    # A sentence right after the one it leans on, citing the same passage, reads as its continuation.
    joined = [Sentence("Corvane unveiled the CX-720C on Monday.", [7]), Sentence("It trains well.", [7])]
    assert count_fields([joined], joined_fields=[0]).orphaned_openings == 0
    assert count_fields([joined]).orphaned_openings == 1


def test_a_brief_is_counted_as_its_general_reader_reads_it():
    counts = count_brief(sample_brief())
    assert len(counts.words_per_card) == 6 and counts.sentences > 30 and counts.brief_words > 200


@pytest.mark.slow
def test_the_sample_world_brief_reads_clean_within_its_budgets(real_sample_brief):
    brief = real_sample_brief
    counts = count_brief(brief)
    print(counts.as_dict())
    assert len(counts.words_per_card) == 5 and counts.sentences >= 30
    assert {name: getattr(counts, name) for name in ZERO} == dict.fromkeys(ZERO, 0), counts.examples
    assert max(counts.words_per_card) <= CARD_WORDS and counts.brief_words <= BRIEF_WORDS
    for card in brief.cards:
        assert 2 <= len(card.summary) <= 4 and len(card.key_takeaway) == 1 and 2 <= len(card.key_insights) <= 4


@pytest.mark.slow
def test_cards_from_corpus_texts_nobody_here_wrote_read_clean(tmp_path):
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not at {CORPUS}")
    from digest.summary.runtime import make_summaries
    from embed.encoder import get_encoder
    from store.settings import Settings
    from tests import quality_corpus

    summaries = make_summaries(Settings(data_dir=tmp_path), get_encoder("minilm"))
    stories = quality_corpus.summedits_stories(CORPUS, limit=15) + quality_corpus.qags_stories(CORPUS, limit=10)
    cards = [c for c in (summaries.card(s, "") for s in stories) if c.summary]
    episodes = quality_corpus.podcast_episodes(CORPUS, limit=10)
    insights = [[i.insight for i in summaries.podcast(e, 3)] for e in episodes]
    for counts in (count_cards(cards), count_fields(insights)):
        print(counts.as_dict())
        assert counts.sentences >= 25
        assert counts.orphaned_openings <= CORPUS_ORPHANS_AT_MOST, counts.examples
        assert (counts.datelines, counts.unbalanced_quotes, counts.glued_titles, counts.fragments) == (0, 0, 0, 0), \
            counts.examples
        assert max(counts.words_per_card, default=0) <= CARD_WORDS
    assert len(cards) >= 20
