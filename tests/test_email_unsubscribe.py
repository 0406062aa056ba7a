"""The unsubscribe link of the email: GET only asks, POST (RFC 8058 one-click) unsubscribes."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.unsubscribe import unsubscribe_router
from digest.subscribers import add_subscriber, list_subscribers


def test_one_click_unsubscribe(sessions):
    view, _ = add_subscriber(sessions, "ana@reader.example", topics=["ai-geopolitics"])
    app = FastAPI()
    app.include_router(unsubscribe_router(sessions))
    client = TestClient(app)
    url = f"/unsubscribe/{view.unsubscribe_token}"

    page = client.get(url)
    assert page.status_code == 200 and 'method="post"' in page.text
    assert list_subscribers(sessions, active_only=True)  # a GET (a link scanner) changes nothing

    done = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "ana@reader.example will get no more briefs" in done.text
    assert list_subscribers(sessions, active_only=True) == []
    assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200  # twice is fine

    assert client.post("/unsubscribe/not-a-token").status_code == 404
    assert client.post("/unsubscribe/" + "a" * 65).status_code == 422
    assert client.get("/unsubscribe/%3Cscript%3E").status_code == 422
