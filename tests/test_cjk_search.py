"""Chinese keyword search: CJK runs are indexed as character unigrams and bigrams in a field of
their own (English text is indexed exactly as before), queries are cut the same way, an index of
the old schema is rebuilt beside the live one on the next embed (vectors kept), and a Chinese
query finds the sample world's Chinese items."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select

from embed.cjk import cjk_grams, mostly_cjk, without_cjk
from embed.encoder import FakeEncoder, normalise
from embed.index import POINTER, IndexStore
from embed.keyword import TEXT, document_fields, query_grams, query_terms
from embed.pipeline import embed_pending
from store.models import Item, Source
from tests.conftest import make_settings
from tests.test_samples import ingest_samples

TEXTS = {
    1: "Nvidia needs a licence to sell its H20 chips to China and takes a charge.",
    2: "英伟达向中国出售H20芯片需要许可证，公司为此计提55亿美元费用。",
    3: "DeepSeek发布V4开源权重模型，上下文长度达到一百万个词元。",
    4: "美国商务部限制高带宽内存出口，国内实验室转向国产算力。",
}


def test_han_runs_become_unigrams_and_bigrams_and_latin_words_stay_words():
    assert cjk_grams("美国芯片") == ["美", "国", "芯", "片", "美国", "国芯", "芯片"]
    assert cjk_grams("DeepSeek发布V4") == ["发", "布", "发布"]
    assert without_cjk("DeepSeek发布V4").split() == ["DeepSeek", "V4"]
    assert query_terms(["deepseek发布v4"]) == ["deepseek", "v4"] and query_grams(["deepseek发布v4"]) == ["发", "布", "发布"]
    assert mostly_cjk("英伟达 H20 出口许可") and not mostly_cjk("Nvidia H20 export licence")


def test_english_text_is_indexed_as_before():
    assert document_fields(TEXTS[1]) == {TEXT: TEXTS[1]}


@pytest.fixture
def store(tmp_path):
    store = IndexStore(tmp_path / "index")
    with store.writer("m", 4) as live:
        live.add(np.array(list(TEXTS)), normalise(np.eye(4, dtype=np.float32)), list(TEXTS.values()))
    return store


@pytest.mark.parametrize("query, first", [
    ("芯片", 2), ("许可证", 2), ("高带宽内存", 4), ("开源模型", 3), ("DeepSeek", 3), ("licence", 1),
])
def test_a_chinese_query_finds_the_chinese_passage(store, query, first):
    from embed.search import keyword_terms

    assert store.load_keywords().search(keyword_terms(query), 10)[0] == first


def test_a_mixed_query_matches_both_scripts(store):
    from embed.search import keyword_terms

    found = store.load_keywords().search(keyword_terms("英伟达H20"), 10)
    assert found[0] == 2 and 1 in found  # "h20" from the Latin field finds the English passage too


def _old_schema_keywords(directory, texts: dict[int, str]) -> None:
    """A keyword directory as schema 1 wrote it: id and text only, CJK runs inside the text."""
    import tantivy

    from embed.keyword import ANALYZER, _analyzer

    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", indexed=True, fast=True)
    builder.add_text_field("text", tokenizer_name=ANALYZER, index_option="freq")
    index = tantivy.Index(builder.build(), path=str(directory), reuse=False)
    index.register_tokenizer(ANALYZER, _analyzer())
    writer = index.writer(heap_size=15_000_000, num_threads=1)
    for pid, text in texts.items():
        writer.add_document(tantivy.Document(id=pid, text=text))
    writer.commit()
    writer.wait_merging_threads()


def test_an_index_of_the_old_schema_is_rebuilt_on_the_next_embed_and_vectors_stay(tmp_path):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    from store.db import open_database

    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        source = Source(url="https://zh.example/feed", kind="feed", title="zh")
        session.add(source)
        session.flush()
        for n, text in TEXTS.items():
            session.add(Item(source_id=source.id, stable_key=f"k{n}", content_hash=f"h{n}", entry_hash="e",
                             kind="article", title=f"t{n}", text=text, language="zh-cn" if n > 1 else "en"))
    store, encoder = IndexStore(settings.index_dir), FakeEncoder()
    first = embed_pending(sessions, encoder, store)
    meta = store.meta()
    # Make the live version an old one: its keyword directory in schema 1, its pointer without the field.
    old_dir = store.dir / "keywords-old"
    with sessions() as session:
        passages = dict(session.execute(select(Item.id, Item.text)).all())
    _old_schema_keywords(old_dir.mkdir() or old_dir, {pid: text for pid, text in passages.items()})
    pointer = json.loads((store.dir / POINTER).read_text())
    pointer.pop("keyword_schema")
    pointer["keywords"] = "keywords-old"
    (store.dir / POINTER).write_text(json.dumps(pointer))
    assert not store.meta().keywords_current
    assert store.load_keywords().search(["芯片"], 10) == []  # the old analyzer: one token per Han run

    again = embed_pending(sessions, encoder, store)
    assert again.passages_embedded == 0 and not again.rebuilt  # no vector re-embedded
    assert again.keywords_rebuilt == first.passages_embedded == store.meta().count
    assert store.meta().keywords_current and store.meta().file != meta.file
    assert store.load_keywords().search(["芯片"], 10)
    assert embed_pending(sessions, encoder, store).keywords_rebuilt == 0  # once


def test_a_chinese_query_finds_the_sample_worlds_chinese_items(tmp_path, sample_server):
    from embed.index import IndexReader
    from embed.search import SearchContext, search
    from store.db import open_database

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    sessions = open_database(settings.db_url)
    assert ingest_samples(settings, sessions, sample_server).count("failed") == 0
    encoder = FakeEncoder()
    store = IndexStore(settings.index_dir)
    embed_pending(sessions, encoder, store)
    ctx = SearchContext(sessions=sessions, reader=IndexReader(store), encoder_factory=lambda: encoder)
    with sessions() as session:
        chinese = dict(session.execute(select(Item.title, Item.id).join(Source)
                                       .where(Source.url.like("%zhineng-guancha%"))).all())
    assert len(chinese) == 6
    for query, title_part in [("出口管制", "美国出口管制新规"), ("分页式注意力缓存", "Ferrite"), ("无人机", "无人机"),
                              ("蒸馏指控", "蒸馏"), ("发展中国家", "发展中国家")]:
        hits = search(ctx, query, k=3, mode="keyword")
        assert hits and title_part in hits[0].title and hits[0].item_id in chinese.values(), (query, hits[:1])



def test_the_cli_announces_the_keyword_rebuild(tmp_path):
    from tests.cli_inprocess import briefcast

    assert briefcast(tmp_path, "embed", BRIEFCAST_ENCODER="fake").returncode == 0
    pointer_file = tmp_path / "data" / "index" / POINTER
    pointer = json.loads(pointer_file.read_text())
    pointer.pop("keyword_schema")
    pointer_file.write_text(json.dumps(pointer))
    ran = briefcast(tmp_path, "embed", BRIEFCAST_ENCODER="fake")
    assert ran.returncode == 0, ran.stderr
    assert "rebuilding it beside the live one" in " ".join(ran.stderr.split())
    assert json.loads(pointer_file.read_text())["keyword_schema"] == 2
    assert "keyword index" not in briefcast(tmp_path, "embed", BRIEFCAST_ENCODER="fake").stderr
