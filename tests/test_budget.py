"""Budgets like the seeds': a card's fields within their limits and 250 words, trimmed in order;
the whole brief brought to its target without repeating a sentence."""

from __future__ import annotations

import dataclasses

from digest.summary.budget import BRIEF_TARGET_WORDS, CARD_WORDS, brief_words, card_words, fit_brief, fit_card
from digest.summary.schema import PodcastBrief, PodcastInsight, Sentence, SourceRef
from tests.email_helpers import card


def words(n: int, tag: str) -> Sentence:
    return Sentence(" ".join([tag] + ["word"] * (n - 1)) + ".", [1])


def big_card(n: int = 1):
    return dataclasses.replace(
        card(n, f"Story {n}"),
        summary=[words(30, f"s{n}{i}") for i in range(5)], key_takeaway=[words(20, f"t{n}a"), words(20, f"t{n}b")],
        key_insights=[words(25, f"i{n}{i}") for i in range(5)], principles=[words(15, f"p{n}{i}") for i in range(3)],
        in_practice=[words(15, f"a{n}{i}") for i in range(3)])


def test_a_card_is_cut_to_its_field_limits_and_word_budget_in_order():
    fitted = fit_card(big_card())
    assert card_words(fitted) <= CARD_WORDS
    assert len(fitted.key_takeaway) == 1 and 2 <= len(fitted.summary) <= 4 and 2 <= len(fitted.key_insights) <= 4
    assert len(fitted.principles) <= 2 and len(fitted.in_practice) <= 2
    assert fitted.summary[0].text.startswith("s10") and fitted.key_insights[0].text.startswith("i10")  # the last go
    assert fitted.reading_minutes == 2  # the card's own 250 words, not its sources'
    small = fit_card(big_card(), max_words=140)
    assert card_words(small) <= 140 and not small.principles and not small.in_practice  # extras go before minimums
    assert (len(small.summary), len(small.key_takeaway), len(small.key_insights)) == (2, 1, 2)


def test_the_minimums_are_never_cut_even_over_budget():
    tiny = fit_card(big_card(), max_words=10)
    assert (len(tiny.summary), len(tiny.key_takeaway), len(tiny.key_insights)) == (2, 1, 2)


def test_the_brief_reaches_its_target_and_says_each_sentence_once():
    cards = [big_card(n) for n in range(1, 6)]
    cards[1] = dataclasses.replace(cards[1], key_insights=[cards[0].summary[0], *cards[1].key_insights])  # a repeat
    episode = SourceRef(9, "ep", None, "pod", "episode")
    podcasts = PodcastBrief("t", "d", [PodcastInsight(cards[0].summary[1], episode),  # already in a card
                                       PodcastInsight(words(20, "podcast"), episode)])
    fitted, pods, unverified = fit_brief(cards, podcasts, [words(20, "rumour")])
    assert brief_words(fitted, pods, unverified) <= BRIEF_TARGET_WORDS
    assert all(card_words(c) <= CARD_WORDS for c in fitted)
    texts = [s.text for c in fitted for f in ("summary", "key_takeaway", "key_insights", "principles", "in_practice")
             for s in getattr(c, f)] + [i.insight.text for i in pods.insights]
    assert len(texts) == len(set(texts))
    assert [i.insight.text for i in pods.insights] == [words(20, "podcast").text]
