"""The retrieval evaluation set: it loads from the corpus, its judgments point at real documents,
it stores into a real SQLite database, and its metrics give the hand-computed answers."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
from sqlalchemy import func, select

from store.db import open_database
from store.entry import sha256
from store.models import Item, Source, TranscriptSegment
from tests.retrieval_set import (
    SET_PATH,
    RetrievalSetError,
    doc_id,
    load_set,
    mrr,
    recall_at_k,
    store_documents,
)

TWIML_INDEX = "podcasts/transcripts-twiml-whisper/episodes/index.tsv"


@pytest.fixture(scope="module")
def retrieval_set(corpus):
    return load_set(corpus)


@pytest.fixture
def sqlite_sessions(sqlite_url):
    factory = open_database(sqlite_url)
    yield factory
    factory.kw["bind"].dispose()


def collection_counts(retrieval_set) -> Counter:
    return Counter((doc.collection.url, doc.kind) for doc in retrieval_set.documents)


# ---------------------------------------------------------------------------------------------
# The set itself


def test_the_set_loads_every_collection(retrieval_set):
    assert collection_counts(retrieval_set) == {
        ("corpus://twiml", "episode"): 18,
        ("corpus://summedits-news", "article"): 25,
        ("corpus://summedits-podcast", "episode"): 21,
        ("corpus://qags-cnndm", "article"): 20,
        ("corpus://qags-xsum", "article"): 20,
    }


def test_keys_and_document_texts_are_unique_and_non_empty(retrieval_set):
    keys = [doc.key for doc in retrieval_set.documents]
    assert len(set(keys)) == len(keys)
    assert all(doc.text.strip() and doc.title.strip() for doc in retrieval_set.documents)
    assert len({doc.text for doc in retrieval_set.documents}) == len(keys)


def test_episodes_from_srt_have_timed_segments(retrieval_set):
    episodes = [doc for doc in retrieval_set.documents if doc.collection.url == "corpus://twiml"]
    for doc in episodes:
        assert len(doc.segments) > 100, doc.key
        assert all(s.start is not None and s.end is not None and s.start <= s.end for s in doc.segments), doc.key
        assert doc.text == "\n".join(s.text for s in doc.segments)


def test_episode_titles_come_from_the_playlist_index(corpus, retrieval_set):
    with (corpus / TWIML_INDEX).open(encoding="utf-8") as index:
        titles = {row["file_stem"]: row["playlist_title"] for row in csv.DictReader(index, delimiter="\t")}
    episodes = {doc.key: doc.title for doc in retrieval_set.documents if doc.collection.url == "corpus://twiml"}
    assert episodes == titles


def test_json_documents_are_found_by_their_doc_id():
    raw = json.loads(SET_PATH.read_text(encoding="utf-8"))
    ids = [spec["doc_id"] for spec in raw["documents"] if "doc_id" in spec]
    assert len(ids) == len(set(ids)) == 25 + 21 + 40


def test_a_doc_id_missing_from_the_corpus_is_reported_by_key(corpus, tmp_path):
    raw = json.loads(SET_PATH.read_text(encoding="utf-8"))
    spec = next(spec for spec in raw["documents"] if spec["key"].startswith("qags-xsum-"))
    spec["doc_id"] = doc_id("not an article in the corpus")
    broken = tmp_path / "retrieval.json"
    broken.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(RetrievalSetError, match=spec["key"]):
        load_set(corpus, broken)


def test_there_are_enough_queries_of_each_style(retrieval_set):
    styles = Counter(query.style for query in retrieval_set.queries)
    assert len(retrieval_set.queries) >= 70
    assert set(styles) == {"keyword", "paraphrase", "detail"}
    assert styles["paraphrase"] >= 20
    assert len({query.q for query in retrieval_set.queries}) == len(retrieval_set.queries)


def test_every_judgment_names_one_to_three_existing_documents(retrieval_set):
    keys = {doc.key for doc in retrieval_set.documents}
    for query in retrieval_set.queries:
        assert 1 <= len(query.relevant) <= 3, query.q
        assert len(set(query.relevant)) == len(query.relevant), query.q
        assert set(query.relevant) <= keys, query.q
        assert query.note.strip(), query.q


def test_detail_queries_point_inside_one_transcript(retrieval_set):
    timed = [query for query in retrieval_set.queries if query.at is not None]
    assert len(timed) >= 10
    for query in timed:
        assert query.style == "detail" and len(query.relevant) == 1, query.q
        episode = retrieval_set.document(query.relevant[0])
        assert episode.segments and 0 <= query.at <= episode.segments[-1].end, query.q


# ---------------------------------------------------------------------------------------------
# Storing into a briefcast database


def test_store_documents_inserts_sources_items_and_segments(retrieval_set, sqlite_sessions):
    ids = store_documents(sqlite_sessions, retrieval_set)

    assert set(ids) == {doc.key for doc in retrieval_set.documents}
    assert len(set(ids.values())) == len(ids)
    with sqlite_sessions() as session:
        sources = {s.url: s.kind for s in session.scalars(select(Source))}
        assert sources == {
            "corpus://twiml": "podcast",
            "corpus://summedits-news": "feed",
            "corpus://summedits-podcast": "podcast",
            "corpus://qags-cnndm": "feed",
            "corpus://qags-xsum": "feed",
        }
        segments = session.scalar(select(func.count()).select_from(TranscriptSegment))
        assert segments == sum(len(doc.segments) for doc in retrieval_set.documents)
        episode = session.get(Item, ids["twiml-0235"])
        assert episode.guid == "twiml-0235" and episode.kind == "episode"
        assert episode.stable_key == sha256("twiml-0235")
        assert episode.entry_hash == sha256(episode.text)
        assert episode.text_source == "transcript" and episode.published is not None
        assert [s.position for s in episode.segments[:3]] == [0, 1, 2]
        assert episode.segments[0].start == 0.0


def test_store_documents_twice_adds_nothing(retrieval_set, sqlite_sessions):
    first = store_documents(sqlite_sessions, retrieval_set)
    second = store_documents(sqlite_sessions, retrieval_set)

    assert second == first
    with sqlite_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == len(retrieval_set.documents)
        assert session.scalar(select(func.count()).select_from(Source)) == 5


# ---------------------------------------------------------------------------------------------
# Metrics


def test_recall_at_k_is_the_share_of_relevant_items_in_the_top_k():
    results = [[1, 2, 3], [9, 8, 7, 6], [5]]
    relevant = [{1}, {6, 8}, {4}]
    # query 1: 1 of 1; query 2: 8 is in the top 3 but 6 is 4th; query 3: none.
    assert recall_at_k(results, relevant, k=3) == pytest.approx((1 + 0.5 + 0) / 3)
    assert recall_at_k(results, relevant, k=10) == pytest.approx((1 + 1 + 0) / 3)


def test_mrr_is_the_mean_reciprocal_rank_of_the_first_relevant_item():
    results = [[1, 2, 3], [9, 8, 7, 6], [5], []]
    relevant = [{1}, {6, 7}, {4}, {4}]
    # ranks: 1, 3 (7 comes before 6), none, none.
    assert mrr(results, relevant) == pytest.approx((1 + 1 / 3 + 0 + 0) / 4)
    assert mrr(results, relevant, k=2) == pytest.approx((1 + 0 + 0 + 0) / 4)


def test_perfect_and_empty_rankings():
    assert recall_at_k([[3, 4]], [{3, 4}]) == mrr([[3, 4]], [{3, 4}]) == 1.0
    assert recall_at_k([[]], [{3}]) == mrr([[]], [{3}]) == 0.0


def test_metrics_refuse_mismatched_or_empty_judgments():
    with pytest.raises(ValueError, match="one of each per query"):
        recall_at_k([[1]], [{1}, {2}])
    with pytest.raises(ValueError, match="at least one relevant"):
        mrr([[1]], [set()])
    with pytest.raises(ValueError, match="no queries"):
        recall_at_k([], [])
