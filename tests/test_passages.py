"""Splitting items into passages: sentence windows with overlap, timed transcript windows."""

from __future__ import annotations

from embed.passages import MAX_PASSAGE_CHARS, MAX_PASSAGES, MAX_WORDS, split_item, split_segments, split_sentences, split_text
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


# --- caps: whatever the text, a passage is passage-sized and an item has a bounded number (issue 11)

RUNAWAY = " ".join(f"Word{n} of the runaway cue, said again and again." for n in range(12_000))  # ~600 KB


def test_one_runaway_cue_becomes_passage_sized_pieces_that_keep_its_time_range():
    cue = Segment(RUNAWAY, start=12.5, end=17.0, speaker="Host")
    passages = split_segments([Segment("Welcome to the show.", 0.0, 12.5, "Host"), cue,
                               Segment("Goodbye.", 17.0, 18.0, "Host")])
    assert len(passages) > 100
    assert all(word_count(p.text) <= MAX_WORDS and len(p.text) <= MAX_PASSAGE_CHARS for p in passages)
    inside = [p for p in passages if "runaway" in p.text]
    assert all(p.start >= 0.0 and p.end <= 18.0 for p in passages)
    assert all((p.start, p.end) in ((12.5, 17.0), (0.0, 17.0), (12.5, 18.0)) for p in inside)
    assert all(p.speaker == "Host" for p in passages)
    said = {w for p in passages for w in p.text.split() if w.startswith("Word")}
    assert said == {f"Word{n}" for n in range(12_000)}  # nothing lost, only cut


def test_text_without_spaces_is_cut_into_passage_sized_pieces():
    for text in ("x" * 50_000, "开源模型" * 5_000, ("y" * 3_000 + " ") * 10):
        passages = split_text(text)
        assert passages and all(len(p.text) <= MAX_PASSAGE_CHARS for p in passages), [len(p.text) for p in passages][:5]
        assert sum(len(p.text.replace(" ", "")) for p in passages) >= len(text.replace(" ", ""))


def test_an_item_makes_at_most_max_passages():
    # 101-word sentences: each window holds one, so a window per 101 words.
    sentence = "Again " + " ".join(["a"] * 99) + " end."
    passages = split_item("Title", " ".join([sentence] * 1_500))
    assert len(passages) == MAX_PASSAGES
    assert [p.position for p in passages] == list(range(MAX_PASSAGES))
