"""The retrieval evaluation set (tests/data/retrieval.json): load it, store it, score a ranking.

Documents live in the shared corpus and are read in place:

- TWIML episodes from their `.srt` files, parsed into timed `Segment`s; the item text is the
  segments joined by newlines, as `ingest.refresh` builds it for a fetched transcript.
- SummEdits and QAGS documents from their JSON files, where one document appears in many
  records. A document is named by `doc_id` = sha1 of the first 200 characters of its text, so
  the set does not depend on record order or on which record we happened to read it from.

`store_documents` puts the documents into a briefcast database as items (one source per corpus
collection), so search can be run over them; `recall_at_k` and `mrr` score the ranked item ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest.transcripts import parse_transcript
from store.entry import Segment, content_hash, sha256
from store.models import Item, Source, TranscriptSegment

SET_PATH = Path(__file__).resolve().parent / "data" / "retrieval.json"
DOC_ID_PREFIX_CHARS = 200


@dataclass(frozen=True)
class Collection:
    """One corpus collection, stored as one briefcast source."""

    path_prefix: str  # a document belongs here when its corpus path starts with this
    url: str
    kind: str  # source kind: feed | podcast
    title: str
    text_field: str | None = None  # the JSON field holding the document text


COLLECTIONS = (
    Collection("podcasts/transcripts-twiml-whisper/", "corpus://twiml", "podcast",
               "TWIML AI Podcast (Whisper transcripts)"),
    Collection("summarization/summedits/summedits_news.json", "corpus://summedits-news", "feed",
               "SummEdits news", "doc"),
    Collection("summarization/summedits/summedits_podcast.json", "corpus://summedits-podcast", "podcast",
               "SummEdits podcast transcripts", "doc"),
    Collection("summarization/qags-unieval/qags_cnndm.json", "corpus://qags-cnndm", "feed",
               "QAGS CNN/DailyMail", "source"),
    Collection("summarization/qags-unieval/qags_xsum.json", "corpus://qags-xsum", "feed",
               "QAGS XSum (BBC)", "source"),
)


@dataclass
class Document:
    key: str
    kind: str  # item kind: article | episode
    title: str
    text: str
    published: datetime  # synthetic, fixed per document (see "about" in the JSON)
    collection: Collection
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class Query:
    q: str
    relevant: list[str]  # document keys
    style: str  # keyword | paraphrase | detail
    note: str
    at: float | None = None  # for detail queries: seconds into the episode where the answer is


@dataclass
class RetrievalSet:
    documents: list[Document]
    queries: list[Query]

    def document(self, key: str) -> Document:
        return next(doc for doc in self.documents if doc.key == key)


class RetrievalSetError(ValueError):
    """The set does not match the corpus: the message names the document and what is missing."""


# ---------------------------------------------------------------------------------------------
# Loading


def load_set(corpus: Path, set_path: Path = SET_PATH) -> RetrievalSet:
    """Read the set and every document's text from the corpus folder."""
    raw = json.loads(set_path.read_text(encoding="utf-8"))
    documents = [_load_document(corpus, spec) for spec in raw["documents"]]
    queries = [Query(**spec) for spec in raw["queries"]]
    return RetrievalSet(documents=documents, queries=queries)


def doc_id(text: str) -> str:
    """The stable name of a JSON-backed document: sha1 of its first 200 characters."""
    return hashlib.sha1(text[:DOC_ID_PREFIX_CHARS].encode("utf-8")).hexdigest()


def collection_of(corpus_path: str) -> Collection:
    for collection in COLLECTIONS:
        if corpus_path.startswith(collection.path_prefix):
            return collection
    known = ", ".join(c.path_prefix for c in COLLECTIONS)
    raise RetrievalSetError(f"{corpus_path}: not in any known collection ({known})")


def _load_document(corpus: Path, spec: dict) -> Document:
    collection = collection_of(spec["corpus"])
    path = corpus / spec["corpus"]
    if collection.text_field is None:
        segments = parse_transcript(path.read_bytes(), "srt")
        text = "\n".join(segment.text for segment in segments)
    else:
        segments = []
        text = _json_document(path, collection.text_field, spec["doc_id"], spec["key"])
    published = datetime.fromisoformat(spec["published"]).replace(tzinfo=UTC)
    return Document(spec["key"], spec["kind"], spec["title"], text, published, collection, segments)


def _json_document(path: Path, text_field: str, wanted: str, key: str) -> str:
    text = _texts_by_doc_id(path, text_field).get(wanted)
    if text is None:
        raise RetrievalSetError(
            f"{key}: no record in {path} has doc_id {wanted} (sha1 of the text's first {DOC_ID_PREFIX_CHARS} chars)"
        )
    return text


@cache
def _texts_by_doc_id(path: Path, text_field: str) -> dict[str, str]:
    records = json.loads(path.read_text(encoding="utf-8"))
    return {doc_id(record[text_field]): record[text_field] for record in records}


# ---------------------------------------------------------------------------------------------
# Storing


def store_documents(sessions: sessionmaker[Session], retrieval_set: RetrievalSet) -> dict[str, int]:
    """Insert the documents as items (with transcript segments); return key -> item id.

    A second call on the same database adds nothing and returns the same ids.
    """
    used = {doc.collection for doc in retrieval_set.documents}
    with sessions.begin() as session:
        sources = {c.url: _source(session, c) for c in COLLECTIONS if c in used}  # in a fixed order: stable ids
        return {doc.key: _item_id(session, sources[doc.collection.url], doc) for doc in retrieval_set.documents}


def _source(session: Session, collection: Collection) -> Source:
    source = session.scalar(select(Source).where(Source.url == collection.url))
    if source is None:
        source = Source(url=collection.url, kind=collection.kind, title=collection.title, language="en")
        session.add(source)
        session.flush()
    return source


def _item_id(session: Session, source: Source, doc: Document) -> int:
    stable_key = sha256(doc.key)
    found = select(Item.id).where(Item.source_id == source.id, Item.stable_key == stable_key)
    existing = session.scalar(found)
    if existing is not None:
        return existing
    item = _new_item(source, stable_key, doc)
    session.add(item)
    session.flush()
    return item.id


def _new_item(source: Source, stable_key: str, doc: Document) -> Item:
    item = Item(
        source_id=source.id,
        stable_key=stable_key,
        guid=doc.key,
        kind=doc.kind,
        title=doc.title,
        text=doc.text,
        language="en",
        published=doc.published,
        content_hash=content_hash(doc.title, doc.text),  # as ingest stores it, so dedupe and re-embedding agree
        entry_hash=sha256(doc.text),
        text_source="transcript" if doc.segments else "feed",
    )
    if doc.segments:
        item.transcript_status = "published"
        item.transcript_type = "application/x-subrip"
        item.segments = [_segment_row(position, segment) for position, segment in enumerate(doc.segments)]
    return item


def _segment_row(position: int, segment: Segment) -> TranscriptSegment:
    return TranscriptSegment(
        position=position, start=segment.start, end=segment.end, speaker=segment.speaker, text=segment.text
    )


# ---------------------------------------------------------------------------------------------
# Metrics


def recall_at_k(results: Sequence[Sequence[int]], relevant: Sequence[set[int]], k: int = 10) -> float:
    """Mean over queries of the share of a query's relevant items found in its top k results."""
    _check_lengths(results, relevant)
    return _mean([len(set(ranked[:k]) & wanted) / len(wanted) for ranked, wanted in zip(results, relevant)])


def mrr(results: Sequence[Sequence[int]], relevant: Sequence[set[int]], k: int | None = None) -> float:
    """Mean over queries of 1/rank of the first relevant result (0 when none is in the list, or its top k)."""
    _check_lengths(results, relevant)
    return _mean([_reciprocal_rank(ranked[:k], wanted) for ranked, wanted in zip(results, relevant)])


def _reciprocal_rank(ranked: Sequence[int], wanted: set[int]) -> float:
    return next((1.0 / rank for rank, item_id in enumerate(ranked, start=1) if item_id in wanted), 0.0)


def _check_lengths(results: Sequence[Sequence[int]], relevant: Sequence[set[int]]) -> None:
    if len(results) != len(relevant):
        raise ValueError(f"{len(results)} result lists for {len(relevant)} relevant sets: one of each per query")
    if not results:
        raise ValueError("no queries to score")
    if any(not wanted for wanted in relevant):
        raise ValueError("every query needs at least one relevant item")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
