"""The replica's tantivy keyword index fed by the vector mirror (embed/keyword_mirror.py), on
SQLite and PostgreSQL: after a load it ranks as the files mode's index does over the same texts,
it follows new and deleted passages through sync, check repairs either half, Chinese is found,
`within` filters, and a search during a load answers from the previous index."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sqlalchemy import delete

from benchmarks.search import Corpus
from embed.keyword import KeywordSearcher, KeywordWriter
from embed.keyword_mirror import KeywordMirror
from embed.mirror import VectorMirror
from store.models import Item, Passage, PassageTombstone, Source
from store.vectors import write_vectors

MODEL, DIM = "fake-8", 8
PER_ITEM = 5
QUERIES = [["zebra"], ["parliament", "budget"], ["the", "storm", "harbour"], ["river", "flood", "warning", "town"]]


def add_texts(sessions, texts: list[str], tag: str = "") -> list[int]:
    """Passages with these texts (PER_ITEM to an item of a new source), each with a vector; their ids."""
    with sessions() as session, session.begin():
        source = Source(url=f"https://keywords.example/{tag}{time.time_ns()}")
        session.add(source)
        passages = []
        for i in range(0, len(texts), PER_ITEM):
            item = Item(source=source, stable_key=f"{tag}{i}", content_hash="c", entry_hash="e", title=f"item {i}")
            session.add(item)
            session.flush()
            for position, body in enumerate(texts[i:i + PER_ITEM]):
                passage = Passage(item_id=item.id, position=position, text=body, content_hash="p")
                session.add(passage)
                passages.append(passage)
        session.flush()
        ids = [p.id for p in passages]
        vectors = np.random.default_rng(len(ids)).standard_normal((len(ids), DIM)).astype(np.float32)
        assert write_vectors(session, MODEL, ids, vectors) == len(ids)
    return ids


def news_texts(n: int, seed: int = 3) -> list[str]:
    """Zipf-distributed words (benchmarks/search.py), with some words every query above can hit."""
    rng = np.random.default_rng(seed)
    texts = Corpus.make(400).passages(rng, n)
    extra = ["parliament budget vote", "storm over the harbour", "river flood warning for the town", "zebra"]
    return [f"{t} {extra[i % len(extra)]}" if i % 3 == 0 else t for i, t in enumerate(texts)]


def reference(tmp_path, ids: list[int], texts: list[str]) -> KeywordSearcher:
    """The files mode's index over the same texts, added in the same order."""
    writer = KeywordWriter(tmp_path / "work", None)
    writer.add(ids, texts, replace=False)
    writer.snapshot(tmp_path / "live")
    return KeywordSearcher(tmp_path / "live")


@pytest.fixture(params=[True, False], ids=["ram", "tempdir"])
def keywords(request):
    mirror = KeywordMirror(in_ram=request.param)
    yield mirror
    mirror.close()


def test_after_load_it_ranks_as_the_files_index_over_the_same_texts(sessions, keywords, tmp_path):
    texts = news_texts(120)
    ids = add_texts(sessions, texts)
    mirror = VectorMirror(sessions, MODEL, DIM, page=17, companion=keywords)
    mirror.load()
    expected = reference(tmp_path, ids, texts)
    assert keywords.count == expected.count == mirror.count == 120
    for words in QUERIES:
        found = keywords.search(words, 10)
        assert found and found == expected.search(words, 10), words
    assert np.array_equal(keywords.ids(), np.sort(ids))


def test_new_passages_are_found_after_sync_and_deleted_ones_disappear(sessions, keywords):
    ids = add_texts(sessions, news_texts(30))
    mirror = VectorMirror(sessions, MODEL, DIM, page=4, companion=keywords)
    mirror.load()
    new = add_texts(sessions, ["an okapi crossed the road", "okapi sightings rise"], "b")
    assert keywords.search(["okapi"], 10) == []  # not before the sync
    with sessions() as session, session.begin():
        session.execute(delete(Passage).where(Passage.id.in_(ids[3:6])))
    zebras_before = set(keywords.search(["zebra"], 100))
    assert set(ids[3:6]) & zebras_before  # passage 3 carries the word

    report = mirror.sync()
    assert report.added == 2 and report.removed == 3
    assert sorted(keywords.search(["okapi"], 10)) == sorted(new)
    assert keywords.search(["okapi", "road"], 10)[0] == new[0]
    assert not set(keywords.search(["zebra"], 100)) & set(ids[3:6])
    assert keywords.count == mirror.count == 30 - 3 + 2
    assert np.array_equal(keywords.ids(), np.sort(mirror.ids()))


def test_check_repairs_the_keyword_half_with_the_vectors(sessions, keywords):
    ids = add_texts(sessions, news_texts(20))
    mirror = VectorMirror(sessions, MODEL, DIM, companion=keywords)
    mirror.load()
    with sessions() as session, session.begin():
        session.execute(delete(Passage).where(Passage.id == ids[3]))
        # As if the tombstone had committed below the watermark: the sync never sees it.
        session.execute(delete(PassageTombstone).where(PassageTombstone.passage_id == ids[3]))
    mirror.sync()
    assert ids[3] in keywords.search(["zebra"], 100)
    assert mirror.check().removed == 1
    assert ids[3] not in keywords.search(["zebra"], 100)

    keywords.remove([ids[15]])  # a step the keyword half lost on its own: the vectors still hold it
    keywords.commit()
    assert ids[15] not in keywords.search(["zebra"], 100) and keywords.count == mirror.count - 1
    mirror.check()
    assert ids[15] in keywords.search(["zebra"], 100)
    assert np.array_equal(keywords.ids(), np.sort(mirror.ids()))


def test_a_chinese_query_finds_chinese_text(sessions, keywords):
    ids = add_texts(sessions, ["北京今天下大雨，交通受到影响", "The weather in Beijing was rainy", "上海股市上涨"])
    VectorMirror(sessions, MODEL, DIM, companion=keywords).load()
    assert keywords.search(["大雨"], 10) == [ids[0]]
    assert keywords.search(["股市"], 10) == [ids[2]]
    assert set(keywords.search(["北京", "beijing"], 10)) == {ids[0], ids[1]}


def test_within_keeps_the_filters_own_ranking(sessions, keywords, tmp_path):
    texts = news_texts(60)
    ids = add_texts(sessions, texts)
    VectorMirror(sessions, MODEL, DIM, companion=keywords).load()
    expected = reference(tmp_path, ids, texts)
    allowed, words = ids[1::2], ["river", "flood", "harbour"]
    assert set(keywords.search(words, 5)) - set(allowed)  # unfiltered, others rank too
    found = keywords.search(words, 5, within=allowed)
    assert len(found) == 5 and set(found) <= set(allowed)
    assert found == expected.search(words, 5, within=allowed)
    assert keywords.search(["zebra"], 5, within=[]) == []


class SlowLoad(VectorMirror):
    """Lets the test search between the pages of a load."""

    probe = None

    def _page_of_vectors(self, conn, after):
        if after and self.probe is not None:
            self.probe()
        return super()._page_of_vectors(conn, after)


def test_a_reload_serves_the_previous_index_until_it_is_complete(sessions, keywords):
    ids = add_texts(sessions, news_texts(30))
    mirror = SlowLoad(sessions, MODEL, DIM, page=7, companion=keywords)
    mirror.load()
    before = keywords.search(["zebra"], 100)
    seen: list[list[int]] = []
    mirror.probe = lambda: seen.append(keywords.search(["zebra"], 100))
    add_texts(sessions, ["zebra zebra zebra"], "b")
    mirror.load()
    assert seen and all(found == before for found in seen)  # never a half-built index
    assert len(keywords.search(["zebra"], 100)) == len(before) + 1 and keywords.count == len(ids) + 1


def test_an_empty_database_gives_an_empty_keyword_mirror(sessions, keywords):
    mirror = VectorMirror(sessions, MODEL, DIM, companion=keywords)
    mirror.load()
    assert keywords.count == 0 and keywords.search(["zebra"], 10) == [] and len(keywords.ids()) == 0


def test_a_reload_that_fails_half_way_leaves_the_previous_index(sessions, keywords):
    ids = add_texts(sessions, news_texts(30))
    mirror = SlowLoad(sessions, MODEL, DIM, page=7, companion=keywords)
    mirror.load()
    before = keywords.search(["zebra"], 100)

    def fail():
        raise ConnectionError("database away")

    mirror.probe = fail
    with pytest.raises(ConnectionError):
        mirror.load()
    mirror.probe = None
    new = add_texts(sessions, ["zebra okapi"], "b")
    mirror.sync()  # its commit must not swap in the failed load's half-built index
    assert keywords.count == mirror.count == len(ids) + 1
    assert sorted(keywords.search(["zebra"], 100)) == sorted(before + new)


def test_searches_during_syncs_see_whole_steps(sessions, keywords):
    add_texts(sessions, news_texts(20))
    mirror = VectorMirror(sessions, MODEL, DIM, companion=keywords)
    mirror.load()
    seen: list[int] = []
    stop = threading.Event()

    def search_meanwhile():
        while not stop.is_set():
            seen.append(len(keywords.search(["okapi"], 1000)))

    searcher = threading.Thread(target=search_meanwhile)
    searcher.start()
    try:
        for step in range(8):  # each sync applies one step of PER_ITEM passages with the word
            add_texts(sessions, [f"okapi number {step} {i}" for i in range(PER_ITEM)], f"s{step}")
            mirror.sync()
    finally:
        stop.set()
        searcher.join()
    assert seen and all(n % PER_ITEM == 0 for n in seen), sorted(set(seen))
    assert len(keywords.search(["okapi"], 1000)) == 8 * PER_ITEM
