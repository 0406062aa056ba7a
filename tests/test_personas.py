"""Personas that mean something, with the real encoder: a card's takeaway and the order of its
insights follow the topic profile's persona only where the story has a sentence that serves that
persona better than the general reader's; otherwise the persona's reader gets the general card."""

from __future__ import annotations

import pytest

from digest.summary.base import PassageText, StoryInput
from digest.summary.extractive import ExtractiveSummarizer
from digest.summary.schema import SourceRef, to_dict
from digest.summary.vectors import SentenceVectors
from digest.topics import load_topic
from tests.conftest import make_settings

CHIP_RULE = [  # one event, with a sentence for policy makers and one for those who run models
    ("Policy Wire", "Commerce tightens AI chip controls", [
        "The US Commerce Department published a rule on Tuesday that adds a memory-bandwidth test to its controls "
        "on AI accelerators sold to China.",
        "Lawmakers in Congress said they would hold hearings on whether the export rule should also regulate "
        "published model weights.",
        "The rule gives the government new powers to put cloud resellers on the Entity List.",
    ]),
    ("Silicon Frontier", "A memory test for AI chips", [
        "Commerce added a memory-bandwidth threshold to the export rules for AI chips on Tuesday, officials said.",
        "Companies that host open-weight models on their own servers can keep running them, because the rule "
        "covers chips and not model weights.",
        "Engineers estimate that inference on the new compliant accelerators costs a third more per million tokens.",
    ]),
]
COOKING = [  # a story with nothing particular for any of the topic's readers
    ("Gadget Weekly", "A week of dinners from the Ladle robot", [
        "The Ladle countertop robot cooked risotto, curry and soup for a family of four for a whole week.",
        "Its stirring arm kept the risotto from sticking, although the curry came out a little bland.",
        "The robot costs about as much as a good dishwasher and needs its pots cleaned by hand.",
    ]),
    ("Kitchen Notes", "Ladle review", [
        "Ladle's robot makes a decent weeknight risotto but cannot chop vegetables on its own.",
        "Reviewers found the soup recipes the most reliable of the twenty dishes it ships with.",
    ]),
]


def story(items, personas) -> StoryInput:
    sources, passages = [], []
    for n, (publisher, title, sentences) in enumerate(items, 1):
        sources.append(SourceRef(item_id=n, title=title, url=f"https://news.example/{n}", publisher=publisher,
                                 kind="article"))
        passages.append(PassageText(n * 10, n, " ".join(sentences), position=0))
    return StoryInput(story_id=1, title=items[0][1], topic="ai-geopolitics", sources=sources, passages=passages,
                      personas=list(personas))


@pytest.fixture(scope="module")
def summarizer():
    from embed.encoder import get_encoder

    return ExtractiveSummarizer(SentenceVectors(get_encoder("minilm")))


@pytest.fixture(scope="module")
def personas(tmp_path_factory):
    return load_topic(make_settings(tmp_path_factory.mktemp("p"), "sqlite://"), "ai-geopolitics").personas


@pytest.mark.slow
def test_two_personas_get_different_takeaways_where_the_story_has_material_for_both(summarizer, personas):
    rule = story(CHIP_RULE, personas)
    general = summarizer.insight_card(rule, "")
    cards = {name: summarizer.insight_card(rule, name) for name in ("Policy Maker", "Director of AI/ML")}
    # What each reader gets: their persona's card where it differs, else the general one.
    got = {name: card if card.persona else general for name, card in cards.items()}
    print({name: (card.persona, card.key_takeaway[0].text) for name, card in [("", general), *got.items()]})
    policy, director = got["Policy Maker"].key_takeaway[0].text, got["Director of AI/ML"].key_takeaway[0].text
    assert policy != director
    assert any(w in policy for w in ("Lawmakers", "government", "Entity List"))
    assert any(w in director for w in ("own servers", "per million tokens"))
    labelled = [c for c in cards.values() if c.persona]
    assert labelled  # at least one persona is served better than the general reader, and says so
    for card in labelled:
        assert card.key_takeaway != general.key_takeaway and card.summary[0] == general.summary[0]


@pytest.mark.slow
def test_a_story_with_nothing_for_a_persona_gives_its_reader_the_general_card(summarizer, personas):
    cooking = story(COOKING, personas)
    general = summarizer.insight_card(cooking, "")
    for name in ("Policy Maker", "Director of AI/ML", "Consultant"):
        card = summarizer.insight_card(cooking, name)
        assert card.persona == "" and to_dict(card) == to_dict(general), name  # no false "for <persona>" label
