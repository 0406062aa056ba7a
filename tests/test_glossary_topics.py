"""A glossary entry is a sentence that says what the term is; topic tags are not said twice."""

from __future__ import annotations

import pytest

from digest.summary.extractive import _defines, _same_topic


@pytest.mark.parametrize(("text", "term"), [
    ("Corvane Semiconductor has unveiled the CX-720C, a cut-down version of its flagship accelerator.", "CX-720C"),
    ("HBM (high-bandwidth memory) is made by a handful of companies.", "HBM"),
    ("DeepSeek's R1 is one of the Chinese open-source AI models that rival Western ones.", "R1"),
    ("Alibaba's Qwen family represents a series of open models.", "Qwen"),
    ("Labs report scores on a benchmark called HardReason-2.", "HardReason-2"),
    ("The Entity List is the Commerce Department's register of restricted buyers.", "Entity List"),
])
def test_a_defining_sentence_defines(text, term):
    assert _defines(text, term)


@pytest.mark.parametrize(("text", "term"), [
    # context, not definitions: the sample world's glossary showed these before
    ("If Lumen-3 is served by a cloud in Singapore, a US rule about Chinese data centres doesn't touch it.", "Lumen-3"),
    ("Engineers said the XH-3 is fine for inference, but they lose throughput in training.", "XH-3"),
    ("High-bandwidth memory (HBM) is made by a handful of companies.", "HBM"),
    ("The SuperCX-720C, a chip nobody ships.", "CX-720C"),  # another name that ends in the term
])
def test_a_sentence_that_only_names_the_term_does_not(text, term):
    assert not _defines(text, term)


@pytest.mark.parametrize(("a", "b"), [("Open Weights", "Open-weight"), ("Distillation", "Distilling"),
                                      ("Chip", "chips"), ("Export Control", "export controls")])
def test_one_topic_in_two_spellings_is_one_tag(a, b):
    assert _same_topic(a, b) and _same_topic(b, a)


@pytest.mark.parametrize(("a", "b"), [("China", "Chinese"), ("AI Act", "AI Office"), ("Semiconductor", "Sovereign")])
def test_different_topics_stay_apart(a, b):
    assert not _same_topic(a, b)


def test_a_description_run_into_a_name_is_not_a_term():
    from digest.summary.extractive import _DESCRIBED

    assert _DESCRIBED.match("Hangzhou-based Lumen AI") and _DESCRIBED.match("US-made H20 chips")
    assert not _DESCRIBED.match("Lumen AI") and not _DESCRIBED.match("CX-720C")


def test_summaries_made_by_older_rules_are_made_again(monkeypatch):
    """The summaries cache keys on the rules' version: an upgrade re-summarises instead of serving old cards."""
    import digest.summary.cache as cache
    from tests import summarise_data

    story = summarise_data.story()
    before = cache.story_content_hash(story, "card")
    assert cache.story_content_hash(story, "card") == before  # stable while nothing changes
    monkeypatch.setattr(cache, "RULES_VERSION", cache.RULES_VERSION + "-next")
    assert cache.story_content_hash(story, "card") != before
