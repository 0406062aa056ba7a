"""Keyword search on PostgreSQL's full text (embed/keyword_pg.py, migration 0015), on the real
server: rare words outrank common ones, `within` a filter even when one item floods the matches,
hostile query text, stems, the migration both ways, and the retrieval set's keyword-mode pins
(tests/test_retrieval.py) reached by this engine as by tantivy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import Engine, event, insert, select, text

from embed.keyword import KeywordSearcher, KeywordWriter
from embed.keyword_pg import FLOOR, RANK_MAX, PgKeywordSearcher, reaching, rsj_idf, tsquery_literal
from embed.pipeline import EmbedReport, split_pending
from embed.search import keyword_terms
from store.db import MIGRATIONS, open_database
from store.models import Item, Passage, Source
from tests.conftest import _postgres_database
from tests.retrieval_eval import ModeScores, score_hits
from tests.retrieval_set import RetrievalSet, load_set, store_documents
from tests.test_retrieval import PINS

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture
def engine(pg_url) -> Iterator[Engine]:
    sessions = open_database(pg_url)
    bind = sessions.kw["bind"]
    yield bind
    bind.dispose()


def add_item(engine: Engine, texts: list[str], key: str = "a") -> list[int]:
    """One item (and its source, once) holding `texts` as passages, through the ORM; their ids."""
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        source = session.scalar(select(Source).where(Source.url == "http://127.0.0.1/feed"))
        if source is None:
            source = Source(url="http://127.0.0.1/feed", title="feed", kind="feed")
            session.add(source)
            session.flush()
        item = Item(source_id=source.id, stable_key=key.ljust(64, "0"), content_hash="c" * 64, entry_hash="e" * 64,
                    kind="article", title=key, text="")
        session.add(item)
        session.flush()
        passages = [Passage(item_id=item.id, position=n, text=t, content_hash=f"{n:064x}") for n, t in enumerate(texts)]
        session.add_all(passages)
        session.flush()
        return [p.id for p in passages]


def bulk_item(engine: Engine, texts: list[str], key: str) -> list[int]:
    """Like add_item, for thousands of passages (Core executemany)."""
    first = add_item(engine, texts[:1], key)[0]
    with engine.begin() as conn:
        item_id = conn.scalar(select(Passage.item_id).where(Passage.id == first))
        rows = [{"item_id": item_id, "position": n, "text": t, "content_hash": f"{n:064x}"}
                for n, t in enumerate(texts[1:], start=1)]
        conn.execute(insert(Passage), rows)
        return list(conn.scalars(select(Passage.id).where(Passage.item_id == item_id).order_by(Passage.position)))


# --- the column and its migration --------------------------------------------------------------


def test_the_database_fills_the_column_for_passages_the_orm_inserts(engine):
    ids = add_item(engine, ["Exports of grain rose in March"])
    with engine.connect() as conn:
        stored = conn.scalar(text("SELECT text_search::text FROM passages WHERE id = :i"), {"i": ids[0]})
        conn.execute(text("UPDATE passages SET text = 'wheat harvest' WHERE id = :i"), {"i": ids[0]})
        updated = conn.scalar(text("SELECT text_search::text FROM passages WHERE id = :i"), {"i": ids[0]})
    assert stored == "'export':1 'grain':3 'march':6 'rose':4"
    assert updated == "'harvest':2 'wheat':1"


def test_migration_downgrades_and_upgrades_again(engine):
    from alembic import command
    from alembic.config import Config

    add_item(engine, ["the river flooded the valley"])
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def columns() -> set[str]:
        with engine.connect() as conn:
            return set(conn.scalars(text("SELECT column_name FROM information_schema.columns "
                                         "WHERE table_name = 'passages'")))

    def indexes() -> set[str]:
        with engine.connect() as conn:
            return set(conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'passages'")))

    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014_passage_vectors")
    assert "text_search" not in columns() and "ix_passages_text_search" not in indexes()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert "text_search" in columns() and "ix_passages_text_search" in indexes()
    assert PgKeywordSearcher(engine).search(["flooding"], 10) != []  # existing rows were filled on the way up


def test_migration_is_a_no_op_on_sqlite(sqlite_url):
    sessions = open_database(sqlite_url)
    with sessions() as session:
        names = {row[1] for row in session.execute(text("PRAGMA table_info(passages)"))}
    sessions.kw["bind"].dispose()
    assert "text_search" not in names and "text" in names


# --- ranking -----------------------------------------------------------------------------------


def test_a_rare_word_outranks_a_common_one_repeated(engine):
    # "market" is in 9 of 30 passages, "zeppelin" in one: ts_rank alone (no idf) would put the
    # passage saying "market" four times first.
    common = add_item(engine, [f"market news {n}" for n in range(8)], "common")
    heavy = add_item(engine, ["market market market market report"], "heavy")
    rare = add_item(engine, ["a zeppelin sighting"], "rare")
    add_item(engine, [f"weather {n}" for n in range(20)], "filler")
    searcher = PgKeywordSearcher(engine)
    ranked = searcher.search(["market", "zeppelin"], 5)
    assert ranked[:2] == [rare[0], heavy[0]]
    assert set(ranked[2:]) <= set(common) and len(ranked) == 5
    assert searcher.search(["zeppelin"], 5) == rare


def test_a_word_in_half_the_passages_or_more_weighs_nothing(engine):
    halves = add_item(engine, ["budget budget budget budget vote", "budget talks", "budget cuts", "a comet"])
    ranked = PgKeywordSearcher(engine).search(["budget", "comet"], 10)
    assert ranked[0] == halves[3] and set(ranked) == set(halves)


def test_more_occurrences_of_a_word_rank_higher(engine):
    ids = add_item(engine, ["solar panels", "solar solar solar panels", "solar solar panels"]
                   + [f"unrelated filler {n}" for n in range(10)])
    assert PgKeywordSearcher(engine).search(["solar"], 3) == [ids[1], ids[2], ids[0]]


def test_stems_match_other_forms_of_a_word(engine):
    ids = add_item(engine, ["The company exported grain", "nothing of interest"])
    searcher = PgKeywordSearcher(engine)
    assert searcher.search(["exports"], 10) == [ids[0]]
    assert searcher.search(["Exporting"], 10) == [ids[0]]


def test_empty_and_stopword_only_queries_find_nothing(engine):
    add_item(engine, ["the and of a to in is it"])
    searcher = PgKeywordSearcher(engine)
    assert searcher.search([], 10) == []
    assert searcher.search(["the", "of", "and"], 10) == []
    assert searcher.search(["   "], 10) == []
    assert searcher.search(["anything"], 0) == []


@pytest.mark.parametrize("hostile", [
    "'", "''", "\\", "\\'", "a'b", "&|!:*()", "!", "<->", "<2>", "foo:*", "foo:A", "(", "')", "|", "&",
    "x' | 'y", "\\\\\\", '"quoted"', "--", "/*", "; DROP TABLE passages; --", "ünïcødé", "naïve café",
    "中文新闻", "😀🚀", "\u200b", "\ufeff", "a\tb\nc", "x" * 3000,
])
def test_hostile_query_text_is_searched_as_words(engine, hostile):
    ids = add_item(engine, ["grain exports rose", "a'b c\\d ünïcødé naïve café 中文新闻 foo"]
                   + ["filler text"] * 10)
    searcher = PgKeywordSearcher(engine)
    found = searcher.search([hostile, "grain"], 10)
    assert ids[0] in found and set(found) <= set(ids[:2])
    assert searcher.search([hostile], 10, within=ids) == searcher.search([hostile], 10, within=ids)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM passages")) == 12


def test_words_with_quotes_and_backslashes_find_their_passage(engine):
    ids = add_item(engine, ["nothing", "the naïve café", "o'neill spoke"] + ["filler"] * 4)
    searcher = PgKeywordSearcher(engine)
    assert searcher.search(["naïve"], 10) == [ids[1]]
    assert searcher.search(["O'Neill"], 10) == [ids[2]]


@pytest.mark.parametrize("lexeme", ["plain", "it's", "back\\slash", "\\", "'", "a b", "x:*", "&", "!(a|b)"])
def test_tsquery_literal_is_one_lexeme_taken_verbatim(engine, lexeme):
    with engine.connect() as conn:
        nodes, matches = conn.execute(
            text("SELECT numnode(CAST(:q AS tsquery)), CAST(:q AS tsquery) @@ array_to_tsvector(ARRAY[:l])"),
            {"l": lexeme, "q": tsquery_literal(lexeme)}).one()
    assert nodes == 1 and matches


# --- within a filter ---------------------------------------------------------------------------


def test_within_returns_the_filters_own_best(engine):
    ids = add_item(engine, ["tariff tariff news", "tariff news", "weather news", "tariff tariff tariff talk", "sports"]
                   + [f"filler {n}" for n in range(10)])
    searcher = PgKeywordSearcher(engine)
    assert searcher.search(["tariff"], 10) == [ids[3], ids[0], ids[1]]
    assert searcher.search(["tariff"], 10, within=[ids[1], ids[2], ids[3]]) == [ids[3], ids[1]]
    assert searcher.search(["tariff"], 1, within=[ids[1], ids[4]]) == [ids[1]]
    assert searcher.search(["tariff"], 10, within=[]) == []
    assert searcher.search(["tariff"], 10, within=[ids[2], ids[4]]) == []


def test_within_finds_the_filters_matches_under_an_item_that_floods_a_common_word(engine):
    flood = bulk_item(engine, [f"election coverage update number {n} election" for n in range(2000)], "flood")
    others = add_item(engine, ["an election in a small town", "the town council met"]
                      + [f"quiet day {n}" for n in range(2100)], "others")
    searcher = PgKeywordSearcher(engine)
    unfiltered = searcher.search(["election", "town"], 10)
    assert others[0] == unfiltered[0]  # "town" is rare: the passage with both words leads
    flooded = searcher.search(["election"], 100)
    assert others[0] not in flooded and set(flooded) <= set(flood)  # "election" twice beats once
    assert searcher.search(["election"], 10, within=others) == [others[0]]
    assert searcher.search(["election", "town"], 10, within=others) == [others[0], others[1]]


def test_count_is_the_number_of_passages(engine):
    add_item(engine, ["one", "two", "three"])
    assert PgKeywordSearcher(engine).count == 3


# --- the retrieval set's keyword-mode pins -----------------------------------------------------


@dataclass
class KeywordWorld:
    engine: Engine
    rset: RetrievalSet
    ids: dict[str, int]  # document key -> item id
    passages: dict[int, tuple[int, float | None, float | None]]  # passage id -> (item id, start, end)
    texts: dict[int, str]


def keyword_world(corpus: Path, url: str) -> KeywordWorld:
    """The retrieval set's documents stored and cut into passages (no vectors: keywords only)."""
    sessions = open_database(url)
    rset = load_set(corpus)
    ids = store_documents(sessions, rset)
    split_pending(sessions, EmbedReport())
    engine = sessions.kw["bind"]
    with engine.connect() as conn:
        rows = conn.execute(select(Passage.id, Passage.item_id, Passage.start, Passage.end, Passage.text)).all()
        conn.execute(text("ANALYZE passages"))
    return KeywordWorld(engine, rset, ids, {r[0]: (r[1], r[2], r[3]) for r in rows}, {r[0]: r[4] for r in rows})


def score_keyword_ranking(world: KeywordWorld, rank: Callable[[list[str], int], list[int]]) -> ModeScores:
    """What tests/retrieval_eval.score_mode measures for mode=keyword: search()'s depth of 100,
    each item by its best passage, the top 10 items."""
    def hits_for(q: str) -> list[SimpleNamespace]:
        best: dict[int, int] = {}
        for pid in rank(keyword_terms(q), 100):
            best.setdefault(world.passages[pid][0], pid)
        return [SimpleNamespace(item_id=item, start=world.passages[pid][1], end=world.passages[pid][2])
                for item, pid in list(best.items())[:10]]

    return score_hits(world.rset, world.ids, hits_for, "keyword")


def tantivy_over(world: KeywordWorld, path: Path) -> KeywordSearcher:
    writer = KeywordWriter(path / "work", None)
    ids = sorted(world.texts)
    writer.add(ids, [world.texts[i] for i in ids], replace=False)
    writer.snapshot(path / "version")
    writer.close()
    return KeywordSearcher(path / "version")


@pytest.fixture(scope="module")
def retrieval_keywords(corpus, tmp_path_factory) -> Iterator[tuple[ModeScores, ModeScores]]:
    for url in _postgres_database():
        world = keyword_world(corpus, url)
        tantivy = tantivy_over(world, tmp_path_factory.mktemp("tantivy"))
        postgres = PgKeywordSearcher(world.engine)
        scores = score_keyword_ranking(world, tantivy.search), score_keyword_ranking(world, postgres.search)
        world.engine.dispose()
        yield scores


@pytest.mark.slow
def test_postgres_keyword_search_meets_the_keyword_pins(retrieval_keywords):
    tantivy, postgres = retrieval_keywords
    print(f"\ntantivy:    {tantivy}\npostgresql: {postgres}")
    recall, reciprocal, timestamp = PINS["keyword"]
    assert postgres.recall_at_10 >= recall and postgres.mrr >= reciprocal, postgres
    assert postgres.timestamp_hit >= timestamp, postgres


# --- skipping what cannot reach the top is exact -------------------------------------------------


def full_ranking(engine: Engine, words: list[str], limit: int, within: list[int] | None = None) -> list[int]:
    """Every passage holding a word scored, the way the module's docstring defines the score."""
    with engine.connect() as conn:
        docs = conn.scalar(text("SELECT count(*) FROM passages"))
        lexemes = list(conn.scalars(text("SELECT unnest(tsvector_to_array(to_tsvector('english', :w)))"),
                                    {"w": " ".join(words)}))
        weights = {lex: rsj_idf(docs, conn.scalar(text("SELECT count(*) FROM passages WHERE text_search @@ "
                                                       "CAST(:q AS tsquery)"), {"q": tsquery_literal(lex)}))
                   for lex in lexemes}
        kept = [lex for lex in lexemes if weights[lex] > FLOOR]
        score = " + ".join(f"{weights[lex]!r} * least(ts_rank(text_search, CAST(:q{i} AS tsquery), 0), "
                           f"{RANK_MAX}::real)"
                           for i, lex in enumerate(kept))
        params = {f"q{i}": tsquery_literal(lex) for i, lex in enumerate(kept)}
        params |= {"any": " | ".join(params.values()), "limit": limit, "within": within}
        among = "" if within is None else "AND id = ANY(:within) "
        return list(conn.scalars(text(f"SELECT id FROM passages WHERE text_search @@ CAST(:any AS tsquery) {among}"
                                      f"ORDER BY {score} DESC, id LIMIT :limit"), params))


def test_skipping_common_words_passages_gives_the_full_rankings_answer(engine):
    from benchmarks.search import Corpus

    corpus = Corpus.make(size=3000)
    rng = np.random.default_rng(1)
    ids = bulk_item(engine, corpus.passages(rng, 12000), "zipf")
    searcher, wide = PgKeywordSearcher(engine), ids[::2]  # a filter past WITHIN_DIRECT: ranked in two steps too
    rankings = []  # ranking statements, and whether they held a combination of words (an AND)

    def seen(_conn, _cursor, statement, parameters, _context, _many):
        if "ORDER BY score" in statement:
            rankings.append(" & " in str(parameters))

    event.listen(engine, "before_cursor_execute", seen)
    two_steps = 0
    for query in corpus.queries(40, seed=4, most_words=6):
        words = keyword_terms(query)
        before = len(rankings)
        assert searcher.search(words, 20) == full_ranking(engine, words, 20), query
        two_steps += len(rankings) - before == 2
        assert searcher.search(words, 20, within=wide) == full_ranking(engine, words, 20, wide), query
    event.remove(engine, "before_cursor_execute", seen)
    assert sum(rankings) >= 10 and two_steps >= 3  # both steps were exercised, not only single rankings


def test_the_sets_of_words_that_can_reach_a_bar():
    best = {"rare": 0.9, "mid": 0.5, "common": 0.3, "commoner": 0.2, "commonest": 0.15}
    assert reaching(list(best), best, 0.6) == [("rare",), ("mid", "common"), ("mid", "commoner"), ("mid", "commonest"),
                                              ("common", "commoner", "commonest")]
    assert reaching(list(best), best, 0.0) == [(t,) for t in best]
    assert reaching(list(best), best, 5.0) == []
    many = {f"w{n}": 0.1 for n in range(12)}
    assert reaching(list(many), many, 0.5) is None
