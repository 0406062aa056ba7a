"""Extractive summaries per story: seconds for card + story brief + podcast insights through
summarise_story (support check included, no cache), against the bare encoder embedding the same
story's sentences once in the same run (the floor: every sentence must be embedded anyway).

    .venv/bin/python -m benchmarks.summarise [--encoder fake|minilm] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

from embed.encoder import get_encoder
from digest.summary.runtime import make_summaries
from digest.summary.text import split_sentences
from store.settings import Settings
from tests import summarise_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="fake")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    encoder = get_encoder(args.encoder)
    story, episode = summarise_data.injected_story(), summarise_data.episode()
    sentences = [s for p in story.passages + episode.passages for s in split_sentences(p.text)]
    encoder.embed_batch(sentences[:4])  # warm up
    from digest.summary.language import english

    started = time.perf_counter()
    english().parse("The English model loads once per process.")  # not part of a story's cost
    load = time.perf_counter() - started
    bare = pipeline = 0.0
    for _ in range(args.rounds):
        started = time.perf_counter()
        encoder.embed_batch(sentences)
        bare += time.perf_counter() - started
        summaries = make_summaries(Settings(), encoder)  # a fresh memo: nothing embedded yet
        started = time.perf_counter()
        summaries.run(story, "card", "Policy Maker")
        summaries.run(story, "story_brief")
        summaries.run(episode, "podcast_insights")
        pipeline += time.perf_counter() - started
    print(f"encoder {encoder.model_id}: {len(story.passages)} + {len(episode.passages)} passages, "
          f"{len(sentences)} sentences")
    print(f"bare embedding of the sentences: {bare / args.rounds:.3f} s per story")
    print(f"card + brief + podcast insights, checked: {pipeline / args.rounds:.3f} s per story "
          f"({pipeline / max(bare, 1e-9):.2f}x the bare embedding)")
    print(f"spaCy en_core_web_sm load, once per process: {load:.2f} s")
    print(f"of which the sentence rules' English parse, uncached: {parse_seconds(sentences):.3f} s "
          f"for the {len(sentences)} sentences (memoised after the first output of a story)")


def parse_seconds(sentences: list[str]) -> float:
    from digest.summary.language import English

    english = English()
    english.parse_many(["Warm up the pipeline."])  # loading the model is not the parse
    started = time.perf_counter()
    english.parse_many(sentences)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
