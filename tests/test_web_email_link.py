"""Each email carries the subscriber's signed settings link, and that link opens their page on the
running reader; "view in a browser" only where the pages are public."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from tests.web_world import web_server, web_world  # noqa: F401 - fixtures


def _message_parts(world, server_url: str, **overrides):
    from digest.mail import subscriber_message
    from digest.slack import load_brief
    from store.models import Brief, Subscriber

    settings = world.settings.model_copy(update={"public_base_url": server_url, **overrides})
    with world.sessions() as session:
        brief = load_brief(session.scalars(select(Brief)).one())
        subscriber = session.get(Subscriber, world.subscriber_id)
        rendered, _message = subscriber_message(settings, brief, subscriber)
    return rendered


def test_the_email_links_to_the_subscribers_own_page(web_world, web_server):
    rendered = _message_parts(web_world, web_server.base_url)
    link = f"{web_server.base_url}/subscription/{web_world.manage_link}"
    assert f'href="{link}"' in rendered.html and f"Manage your subscription: {link}" in rendered.text
    page = httpx.get(link)
    assert page.status_code == 200 and "reader@example.org" in page.text and "Send time" in page.text
    assert "view in a browser" not in rendered.html  # the pages need a key this subscriber does not have


def test_view_in_a_browser_only_when_the_pages_are_public(web_world, web_server):
    rendered = _message_parts(web_world, web_server.base_url, web_public=True)
    found = re.search(r'<a href="([^"]+)"[^>]*>view in a browser', rendered.html)
    assert found and found.group(1) == f"{web_server.base_url}/briefs/{web_world.topic}/{web_world.day}"


def test_a_message_without_a_subscriber_row_has_no_settings_link(web_world):
    from digest.mail import subscriber_page_url
    from store.models import Subscriber

    assert subscriber_page_url(web_world.settings, Subscriber(email="t@example.org", unsubscribe_token="test")) is None
