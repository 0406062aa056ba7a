"""Brief quality: what a reader trips over, counted (digest/quality.py), on

- the sample world's brief as `make run` makes it (the real default encoder, a fresh data dir),
  or any stored brief.json given with --brief (e.g. one saved before a change);
- the seeds, written by people: the reference;
- cards and podcast insights built from corpus texts nobody on this project wrote
  (tests/quality_corpus.py), with the real encoder and the support check.

    .venv/bin/python -m benchmarks.brief_quality [--brief data/briefs/T/D/brief.json] [--skip-run] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from digest.quality import Counts, count_brief, count_cards, count_fields
from digest.summary.schema import DailyBrief, Sentence, from_dict
from tests.conftest import CORPUS

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
COLUMNS = ("orphaned_openings", "datelines", "unbalanced_quotes", "glued_titles", "fragments", "repeated")


def sample_world_brief(workdir: Path, encoder: str = "minilm") -> DailyBrief:
    """`briefcast run --offline` in a fresh directory, as a newcomer runs it: its stored brief."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")} | {
        "BRIEFCAST_CONFIG": str(workdir / "absent.toml"), "BRIEFCAST_ENCODER": encoder, "COLUMNS": "200"}
    done = subprocess.run([str(Path(sys.executable).parent / "briefcast"), "run", "--offline"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"briefcast run failed:\n{done.stderr[-3000:]}")
    path = Path(re.search(r"^Brief: (\S+brief\.html)$", done.stdout, re.M).group(1)).with_name("brief.json")
    return from_dict(DailyBrief, json.loads(path.read_text()))


# --- the seeds -------------------------------------------------------------------------------------

_SEED_000_FIELDS = ("Summary", "Key takeaway", "Key insights", "Principles", "In practice")


def seed_fields() -> dict[str, list[list[Sentence]]]:
    """The seeds' text fields as people wrote them (000: the card's five fields; 001: the editorial's
    paragraphs; 002: the podcast insights; 003: the social thread, as input). A paragraph is one
    field, and its sentences read in order: each cites the paragraph, so a sentence that follows
    its predecessor is counted as joined, as in a brief's summary."""
    from digest.summary.sentences import source_sentences

    counter = iter(range(10_000))

    def sentences(block: str) -> list[Sentence]:
        paragraph = next(counter)
        return [Sentence(s, [paragraph]) for line in block.splitlines() if line.strip()
                for s in source_sentences(line.strip().lstrip("- "))]

    card = (SEEDS / "000_41e883deef630218.txt").read_text()
    pattern = r"^(" + "|".join(_SEED_000_FIELDS + ("Topics",)) + r")\s*$"
    parts = re.split(pattern, card, flags=re.M)
    blocks = dict(zip(parts[1::2], parts[2::2]))
    editorial = (SEEDS / "001_7300e50594bc382d.txt").read_text()
    body = editorial[editorial.index("min brief\n") + 10: editorial.index("Editorial perspective")]
    podcast = (SEEDS / "002_271ca3de4280d624.txt").read_text().split("\n", 3)[3]
    thread = (SEEDS / "003_b3f3aefd5886670b.txt").read_text()
    return {
        "seed 000 (card)": [sentences(blocks[f]) for f in _SEED_000_FIELDS],
        "seed 001 (editorial)": [sentences(p) for p in body.split("\n\n") if p.strip()],
        "seed 002 (podcast brief)": [sentences(p) for p in podcast.replace("Related Insights", "").split("\n\n")
                                     if p.strip()],
        "seed 003 (thread, input)": [sentences(p) for p in thread.splitlines() if p.strip()],
    }


# --- corpus stories ------------------------------------------------------------------------------


def corpus_counts(encoder_name: str) -> dict[str, Counts]:
    from digest.summary.runtime import make_summaries
    from embed.encoder import get_encoder
    from store.settings import Settings
    from tests import quality_corpus

    summaries = make_summaries(Settings(), get_encoder(encoder_name))
    out: dict[str, Counts] = {}
    for name, stories in (("SummEdits news stories", quality_corpus.summedits_stories(CORPUS)),
                          ("QAGS CNN/DM + XSum articles", quality_corpus.qags_stories(CORPUS))):
        cards = [summaries.card(story, "") for story in stories]
        out[name] = count_cards([c for c in cards if c.summary])
    episodes = quality_corpus.podcast_episodes(CORPUS)
    insights = [[i.insight for i in summaries.podcast(e, 3)] for e in episodes]
    out["SummEdits podcast insights"] = count_fields(insights)
    return out


def row(name: str, counts: Counts) -> str:
    words = counts.words_per_card
    per_card = f"{max(words)} / {round(sum(words) / len(words))}" if words else "—"
    cells = [str(getattr(counts, c)) for c in COLUMNS]
    return f"| {name} | {counts.sentences} | " + " | ".join(cells) + f" | {per_card} | {counts.brief_words} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brief", type=Path, help="count this brief.json instead of running the sample world")
    parser.add_argument("--skip-run", action="store_true", help="no sample-world run (seeds and corpus only)")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Counts] = {}
    started = time.perf_counter()
    if args.brief:
        results[f"brief {args.brief}"] = count_brief(from_dict(DailyBrief, json.loads(args.brief.read_text())))
    elif not args.skip_run:
        with tempfile.TemporaryDirectory() as tmp:
            results["sample world brief (make run)"] = count_brief(sample_world_brief(Path(tmp), args.encoder))
    for name, fields in seed_fields().items():
        results[name] = count_fields(fields, list(range(len(fields))))
    if CORPUS.is_dir():
        results.update(corpus_counts(args.encoder))
    if args.json:
        print(json.dumps({k: v.as_dict() for k, v in results.items()}, indent=1))
        return
    print("| text | sentences | " + " | ".join(c.replace("_", " ") for c in COLUMNS)
          + " | words per card (max / mean) | words |")
    print("|---|---" + "|---" * len(COLUMNS) + "|---|---|")
    for name, counts in results.items():
        print(row(name, counts))
    for name, counts in results.items():
        for what, examples in counts.examples.items():
            for text in examples:
                print(f"  {name} · {what}: {text[:160]}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
