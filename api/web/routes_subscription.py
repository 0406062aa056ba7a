"""`/subscription/{link}`: the page a subscriber reaches from the signed link in each email.

The link is the credential (no sign-in); the page is sent with `Referrer-Policy: no-referrer` so
the link never leaks to a site the page links to. Saving is a POST with the CSRF token.
"""

from __future__ import annotations

from zoneinfo import available_timezones

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from api.web import subscription as sub
from api.web.forms import read_form
from digest.subscribers import SubscriberError

COMMON_ZONES = sorted(available_timezones() - {"localtime", "Factory"})


def router(web) -> APIRouter:
    from api.web import PageError

    r = APIRouter(include_in_schema=False)

    def load(link: str):
        with web.sessions() as session:
            row = sub.subscriber_for_link(session, link)
            if row is None:
                raise PageError(404, "Link not recognised",
                                "This subscription link does not belong to any subscriber; use the link in your "
                                "latest email.")
            return sub.current(row)

    def show(request: Request, link: str, values, *, saved=False, error=None, status=200) -> HTMLResponse:
        return web.pages.render(request, "subscription.html.j2", status=status, referrer="no-referrer",
                                title="Your subscription", link=link, s=values, choices=sub.choices(web.settings),
                                zones=COMMON_ZONES, saved=saved, error=error)

    @r.get("/subscription/{link}", response_class=HTMLResponse)
    def page(request: Request, link: str) -> HTMLResponse:
        web.visitor(request)
        return show(request, link, load(link))

    @r.post("/subscription/{link}", response_class=HTMLResponse)
    async def save(request: Request, link: str) -> HTMLResponse:
        form = await read_form(request)
        web.csrf.check(request, form)
        await run_in_threadpool(web.visitor, request)
        try:
            values = await run_in_threadpool(_save, web, link, form)
        except SubscriberError as exc:
            return show(request, link, await run_in_threadpool(load, link), error=str(exc), status=422)
        return show(request, link, values, saved=True)

    return r


def _save(web, link: str, form):
    from api.web import PageError

    known = sub.choices(web.settings)
    with web.sessions() as session, session.begin():
        row = sub.subscriber_for_link(session, link)
        if row is None:
            raise PageError(404, "Link not recognised", "This subscription link does not belong to any subscriber.")
        sub.apply(row, form, known)
        return sub.current(row)
