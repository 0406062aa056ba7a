"""Stories and episodes built from corpus texts nobody on this project wrote, for the brief-quality
counts (benchmarks/brief_quality.py, tests/test_brief_quality.py): so the sentence rules are judged
on real reporting, not only on the sample world they were written beside.

- SummEdits news documents (2023 news, real wire copy with datelines, bylines and boilerplate),
  grouped by the story labels of tests/data/story_pairs.json; the other documents one per story;
- QAGS articles (CNN/DM and XSum, as the benchmark ships them: lowercased and tokenised), one per
  story;
- SummEdits podcast documents (real transcripts, filler and all) as episodes.
"""

from __future__ import annotations

import json
from pathlib import Path

from digest.summary.base import PassageText, StoryInput
from digest.summary.schema import SourceRef
from embed.passages import split_item

PAIRS = Path(__file__).resolve().parent / "data" / "story_pairs.json"
SUMMEDITS = "summarization/summedits"
QAGS = "summarization/qags-unieval"


def _story(story_id: int, docs: list[tuple[str, str]], kind: str = "article", publisher: str = "corpus") -> StoryInput:
    sources, passages = [], []
    for n, (title, text) in enumerate(docs):
        item_id = story_id * 100 + n
        sources.append(SourceRef(item_id=item_id, title=title, url=None, publisher=f"{publisher} {n + 1}", kind=kind))
        for p in split_item(title if kind == "article" else "", text):
            passages.append(PassageText(item_id * 1000 + p.position, item_id, p.text, position=p.position))
    return StoryInput(story_id=story_id, title=docs[0][0], topic="corpus", sources=sources, passages=passages)


def _title_and_text(doc: str) -> tuple[str, str]:
    first, _, rest = doc.strip().partition("\n")
    return (first.strip()[:150], rest.strip()) if rest.strip() and len(first.split()) <= 25 else ("", doc.strip())


def summedits_stories(corpus: Path, limit: int = 30) -> list[StoryInput]:
    """SummEdits news documents: those labelled in story_pairs.json grouped by story, then others."""
    records = {r["id"]: r for r in json.loads((corpus / SUMMEDITS / "summedits_news.json").read_text())}
    labelled: dict[str, list[str]] = {}
    for spec in json.loads(PAIRS.read_text())["items"].values():
        if spec["corpus"] == "summedits" and spec["id"] in records:
            labelled.setdefault(spec["story"], []).append(spec["id"])
    groups = list(labelled.values())
    used = {i for g in groups for i in g}
    docs = list(dict.fromkeys(r["doc"] for r in records.values()))  # each document has several summaries
    by_doc = {}
    for rid, record in records.items():
        by_doc.setdefault(record["doc"], rid)
    groups += [[by_doc[d]] for d in docs if by_doc[d] not in used]
    stories = []
    for n, group in enumerate(groups[:limit], 1):
        texts = list(dict.fromkeys(records[i]["doc"] for i in group))
        stories.append(_story(1000 + n, [_title_and_text(t) for t in texts], publisher="SummEdits news"))
    return stories


def qags_stories(corpus: Path, limit: int = 20) -> list[StoryInput]:
    stories = []
    for name in ("qags_cnndm.json", "qags_xsum.json"):
        seen: dict[int, str] = {}
        for record in json.loads((corpus / QAGS / name).read_text()):
            seen.setdefault(record["doc_id"], record["source"])
        for n, text in enumerate(list(seen.values())[: limit // 2], 1):
            stories.append(_story(2000 + len(stories) + 1, [("", text)], publisher=f"QAGS {name[5:-5]}"))
    return stories


def podcast_episodes(corpus: Path, limit: int = 20) -> list[StoryInput]:
    records = json.loads((corpus / SUMMEDITS / "summedits_podcast.json").read_text())
    docs = list(dict.fromkeys(r["doc"] for r in records))[:limit]
    return [_story(3000 + n, [("", doc)], kind="episode", publisher="SummEdits podcast") for n, doc in enumerate(docs, 1)]
