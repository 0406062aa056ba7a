"""Search across languages with `index_source=database` on PostgreSQL, with the real encoders
(MiniLM for passages, USE-m3 for the second encoder's two roles) on the 48 English and Chinese
items of tests/data/crosslingual_pairs.json: each role's vectors are rows of `passage_vectors`
under `<model>@other` / `<model>@leads` (no embedded mark), every search context mirrors them, and
a title finds its twin in the other language as it does from the files (TWIN_PIN)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from embed.db_embed import embed_into_database
from embed.encoder import MINILM_MODEL_ID, get_encoder
from embed.multilingual import USEM3_MODEL_ID, LazyEncoder, UseM3Encoder
from embed.multilingual_index import LEADS, OTHER, DatabaseMultilingualEmbedding, role_model_id
from embed.runtime import search_context
from store.db import open_database
from store.models import Item, Passage
from store.vectors import vector_count
from tests.conftest import _postgres_database, make_settings
from tests.crosslingual_world import add_items, load_crosslingual
from tests.test_crosslingual_search import TWIN_PIN, twin_rate

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    minilm = get_encoder("minilm")
    for url in _postgres_database():
        sessions = open_database(url)
        data = load_crosslingual()
        ids = add_items(sessions, data)
        usem3 = LazyEncoder(lambda: get_encoder("usem3", threads=2), USEM3_MODEL_ID, UseM3Encoder.dim)
        report = embed_into_database(sessions, minilm, multilingual=DatabaseMultilingualEmbedding(usem3))
        settings = make_settings(tmp_path_factory.mktemp("across-db"), url, index_source="database")
        ctx = search_context(settings, sessions)
        ctx._encoder = minilm  # the torch route's own model, already loaded (the ONNX export gives the same ranking)
        try:
            yield sessions, data, ids, report, ctx
        finally:
            for reader in (ctx.reader, *ctx.multilingual.readers.values()):
                reader.close()
            sessions.kw["bind"].dispose()


def test_each_role_holds_its_passages_and_marks_nothing(world):
    sessions, _, _, report, _ = world
    with sessions() as session:
        zh = session.scalar(select(func.count()).select_from(Passage).join(Item).where(Item.language == "zh-CN"))
        counts = {role: vector_count(session, role_model_id(USEM3_MODEL_ID, role)) for role in (OTHER, LEADS)}
        marks = set(session.scalars(select(Passage.embedded_model).distinct()))
    assert counts == {OTHER: zh, LEADS: 24} and report.multilingual.embedded == zh + 24
    assert marks == {MINILM_MODEL_ID}  # the passage encoder's; a role's vectors mark nothing


def test_embedding_again_encodes_nothing(world):
    sessions, *_, ctx = world
    unloaded = LazyEncoder(lambda: pytest.fail("nothing to embed, yet USE-m3 was loaded"), USEM3_MODEL_ID, 512)
    again = embed_into_database(sessions, ctx.encoder, multilingual=DatabaseMultilingualEmbedding(unloaded))
    assert again.multilingual.embedded == again.multilingual.removed == 0 and not unloaded.loaded


@pytest.mark.parametrize("source", ["en", "zh"])
def test_a_title_finds_its_twin_in_the_other_language(world, source):
    _, data, ids, _, ctx = world
    rate = twin_rate(ctx, data, ids, source)
    print(f"\ndatabase {source}->other: {rate:.3f}")
    assert rate >= TWIN_PIN
