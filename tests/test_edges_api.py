"""Hard edges of the HTTP API on SQLite and on the real PostgreSQL: filters that cannot reach the
database intact are 422 (not a 500 quoting SQL), and /items answers in bounded pages however
large the stored item is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import SEGMENT_CHARS, TEXT_PAGE_CHARS, TRANSCRIPT_PAGE_CHARS, create_app
from store import repo
from store.db import open_database
from store.models import Item, TranscriptSegment
from tests.conftest import _postgres_database, make_settings
from tests.test_api import build_world


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def api(request, tmp_path_factory):
    """One world per database for the module: the tests read it (the paging test adds an item)."""
    tmp = tmp_path_factory.mktemp("edges-api")
    databases = _postgres_database() if request.param == "postgresql" else iter([f"sqlite:///{tmp / 'api.db'}"])
    url = next(databases)
    settings = make_settings(tmp, url, encoder="fake")
    key = build_world(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, {"X-API-Key": key}, settings
    next(databases, None)  # drops the PostgreSQL database


# --- 7. filters out of range ---------------------------------------------------------------------


@pytest.mark.parametrize("params, fragment", [
    ({"source": "2147483648"}, "out of range"),  # INTEGER on PostgreSQL: DataError, its SQL in the 500
    ({"source": "99999999999999999999999"}, "out of range"),  # SQLite: OverflowError in the driver
    ({"source": "9" * 2048}, "out of range"),  # int() alone would refuse over 4,300 digits; 2,048 still parse
    ({"source": "0"}, "out of range"),
    ({"source": "²"}, "non-ASCII"),  # str.isdigit() is true, int() raises ValueError
    ({"source": "1٣"}, "non-ASCII"),  # an Arabic-Indic three
    ({"since": "0001-01-01T00:00:00+23:59"}, "since"),  # a day before year 1 in UTC
    ({"until": "9999-12-31T23:59:59-01:00"}, "until"),  # past year 9999 in UTC
])
def test_filters_that_cannot_reach_the_database_are_422(api, params, fragment):
    client, headers, _ = api
    response = client.get("/search", params={"q": "export"} | params, headers=headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request" and fragment in body["message"], body
    assert "SQL" not in response.text and "Error" not in body["message"]


@pytest.mark.parametrize("params, count", [
    ({"source": "2147483647"}, 0),  # the largest id: valid, no such source
    ({"source": "0001"}, 2),  # leading zeros are the same id
    ({"source": "https://news.example/feed"}, 2),
    ({"since": "0001-01-01T00:00:00-01:00", "until": "9999-12-31T23:59:59+01:00"}, 0),  # in range in UTC
    ({"until": "9999-12-31"}, 0),
])
def test_filters_at_the_edges_of_their_range_are_answered(api, params, count):
    """build_world's items have no published date, so a date filter matches none of them."""
    client, headers, _ = api
    response = client.get("/search", params={"q": "export"} | params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["count"] == count


def test_utc_datetime_clips_what_datetime_cannot_hold_in_utc(sessions):
    """Below the API: a bound or a stored date whose UTC instant leaves datetime's range was an
    OverflowError raised inside SQLAlchemy (a StatementError carrying the statement)."""
    east, west = timezone(timedelta(hours=23, minutes=59)), timezone(timedelta(hours=-1))
    early, late = datetime(1, 1, 1, tzinfo=east), datetime(9999, 12, 31, 23, 59, 59, tzinfo=west)
    with sessions() as session, session.begin():
        assert session.scalars(select(Item.id).where(Item.published >= early, Item.published < late)).all() == []
        source, _ = repo.add_source(session, "https://edge.example/feed")
        session.add(Item(source_id=source.id, stable_key="e", content_hash="h", entry_hash="h", published=early))
        session.add(Item(source_id=source.id, stable_key="l", content_hash="h", entry_hash="h", published=late))
    with sessions() as session:
        stored = sorted(session.scalars(select(Item.published).where(Item.stable_key.in_(["e", "l"]))).all())
    assert stored == [datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]


# --- 5. /items in pages ----------------------------------------------------------------------------


def store_big_item(sessions, text: str, segments: list[str]) -> int:
    """Written straight to the tables, past whatever caps ingest applies: the API must bound its
    answer whatever an older or a future database holds."""
    with sessions() as session, session.begin():
        source, _ = repo.add_source(session, "https://big.example/feed", title="Big")
        item = Item(source_id=source.id, stable_key="big", content_hash="h", entry_hash="h", kind="episode",
                    title="A long one", text=text)
        session.add(item)
        session.flush()
        session.add_all(TranscriptSegment(item_id=item.id, position=n, start=float(n), end=n + 1.0, speaker="Ana",
                                          text=words) for n, words in enumerate(segments))
        return item.id


def test_a_huge_item_is_answered_in_bounded_pages_that_add_up_to_all_of_it(api):
    client, headers, settings = api
    sessions = open_database(settings.db_url)
    text = "".join(f"Zeile {n}: Exportkontrollen für Speicherbandbreite — ☃. " for n in range(12_000))  # 600k chars
    segments = [f"segment {n} " * 3 for n in range(1_500)]
    segments[7] = "ü" * 300_000  # one 300,000-character cue, as a VTT file once gave
    item_id = store_big_item(sessions, text, segments)
    sessions.kw["bind"].dispose()

    first = client.get(f"/items/{item_id}", headers=headers)
    assert first.status_code == 200
    assert len(first.content) < 3 * (TEXT_PAGE_CHARS + TRANSCRIPT_PAGE_CHARS) + 50_000  # UTF-8, JSON, 200 segments
    page = first.json()
    assert page["text_chars"] == len(text) and page["text_truncated"] and page["text"] == text[:TEXT_PAGE_CHARS]
    assert page["transcript_segments"] == 1_500 and page["transcript"][7]["text_truncated"]
    assert page["transcript"][7]["text"] == "ü" * SEGMENT_CHARS

    read, offset = [], 0
    while offset is not None:
        body = client.get(f"/items/{item_id}", params={"text_offset": offset, "transcript_limit": 1},
                          headers=headers).json()
        assert len(body["text"]) <= TEXT_PAGE_CHARS and body["text_offset"] == offset
        read.append(body["text"])
        offset = body["next_text_offset"]
    assert "".join(read) == text and not body["text_truncated"]

    seen, offset = [], 0
    while offset is not None:
        body = client.get(f"/items/{item_id}", params={"transcript_offset": offset, "text_limit": 1},
                          headers=headers).json()
        assert 1 <= len(body["transcript"]) <= 200
        assert sum(len(s["text"]) for s in body["transcript"]) <= TRANSCRIPT_PAGE_CHARS
        seen += body["transcript"]
        offset = body["next_transcript_offset"]
    assert [s["start"] for s in seen] == [float(n) for n in range(1_500)]
    assert [s["text"] for s in seen if not s["text_truncated"]] == [t for n, t in enumerate(segments) if n != 7]


@pytest.mark.parametrize("params", [{"text_limit": TEXT_PAGE_CHARS + 1}, {"transcript_limit": 201},
                                    {"text_offset": -1}, {"transcript_offset": 2**31}])
def test_item_page_parameters_are_bounded(api, params):
    client, headers, _ = api
    response = client.get("/items/1", params=params, headers=headers)
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"


def test_an_item_past_its_last_page_is_empty_not_an_error(api):
    client, headers, _ = api
    body = client.get("/items/2", params={"text_offset": 10**9, "transcript_offset": 10**9}, headers=headers).json()
    assert (body["text"], body["next_text_offset"]) == ("", None)
    assert (body["transcript"], body["next_transcript_offset"]) == ([], None)
    whole = client.get("/items/2", headers=headers).json()
    assert whole["transcript"][0]["speaker"] == "Ana" and whole["text_truncated"] is False
    assert whole["transcript_segments"] == 1 and whole["next_transcript_offset"] is None

