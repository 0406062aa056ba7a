"""Splitting items into passages: sentence windows with overlap, timed transcript windows."""

from __future__ import annotations

from embed.passages import MAX_WORDS, split_item, split_segments, split_sentences, split_text
from ingest.text import word_count
from ingest.transcripts import parse_transcript
from store.entry import Segment


def test_sentences_respect_abbreviations_and_cjk_stops():
    assert split_sentences("Dr. Smith met the U.S. envoy. She left! 开源模型。发展中国家。") == [
        "Dr. Smith met the U.S. envoy.", "She left! 开源模型。", "发展中国家。"]


def test_windows_stay_within_bounds_and_overlap_by_a_sentence(corpus):
    text = (corpus / "podcasts/transcripts-twiml-whisper/episodes/twiml-0016.txt").read_text()
    passages = split_text(text)
    sizes = [word_count(p.text) for p in passages]
    assert all(s <= MAX_WORDS for s in sizes)
    assert sum(120 <= s for s in sizes[:-1]) >= 0.9 * (len(sizes) - 1)
    for a, b in zip(passages, passages[1:], strict=False):
        assert split_sentences(a.text)[-1] == split_sentences(b.text)[0]  # one sentence of overlap
    assert [p.position for p in passages] == list(range(len(passages)))


def test_a_sentence_longer_than_a_passage_is_cut():
    passages = split_text(" ".join(["word"] * 450) + ".")
    assert all(word_count(p.text) <= 200 for p in passages) and sum(word_count(p.text) for p in passages) >= 450


def test_transcript_windows_keep_times_and_the_main_speaker(corpus):
    data = (corpus / "podcasts/transcripts-twiml-whisper/episodes/twiml-0016.srt").read_bytes()
    segments = parse_transcript(data, "srt")
    passages = split_segments(segments)
    assert len(passages) > 10
    assert all(p.start is not None and p.end is not None and p.start < p.end for p in passages)
    assert all(a.start <= b.start for a, b in zip(passages, passages[1:], strict=False))
    assert passages[-1].end == segments[-1].end


def test_speaker_is_the_one_who_talks_most():
    segs = [Segment("Chips matter a lot here.", 0, 2, "Ana"), Segment("Yes.", 2, 3, "Bo"),
            Segment("And export rules shape everything.", 3, 6, "Ana")]
    [passage] = split_segments(segs)
    assert passage.speaker == "Ana" and (passage.start, passage.end) == (0, 6)


def test_title_leads_the_first_passage_of_an_article():
    [first] = split_item("Lumen-3 ships", "The model is open. It is fast.")
    assert first.text.startswith("Lumen-3 ships.") and first.content_hash
