"""Sign in with an API key through a form, sign out. Both POSTs carry the CSRF token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from api.web.forms import first, read_form

WRONG_KEY = "That key was not recognised (or it was revoked). Keys come from `briefcast apikey create`."
TOO_MANY = "Too many failed sign-ins from this address. Try again in {seconds} seconds."


def router(web) -> APIRouter:
    from api.web import local_target

    r = APIRouter(include_in_schema=False)

    @r.get("/signin", response_class=HTMLResponse)
    def signin_form(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002 - the query's name
        reader = web.visitor(request)
        return web.pages.render(request, "signin.html.j2", title="Sign in", next=local_target(next), error=None,
                                already=reader)

    @r.post("/signin")
    async def signin(request: Request):
        form = await read_form(request)
        web.csrf.check(request, form)
        target = local_target(first(form, "next", "/"))
        address = request.client.host if request.client else "unknown"
        wait = web.failed_signins.attempt(address)  # counted now; taken back below if the key is right
        if wait is not None:  # refused before the key is looked at: no answer about it while blocked
            request.state.reader = None
            response = web.pages.render(request, "signin.html.j2", status=429, title="Sign in", next=target,
                                        error=TOO_MANY.format(seconds=wait), already=None)
            response.headers["Retry-After"] = str(wait)
            return response
        key_id = await run_in_threadpool(_key_id, web.sessions, first(form, "key").strip())
        if key_id is None:
            request.state.reader = None
            return web.pages.render(request, "signin.html.j2", status=401, title="Sign in", next=target,
                                    error=WRONG_KEY, already=None)
        web.failed_signins.succeeded(address)
        response = RedirectResponse(target, status_code=303)
        web.cookies.set(request, response, key_id)
        return response

    @r.post("/signout")
    async def signout(request: Request) -> RedirectResponse:
        form = await read_form(request)
        web.csrf.check(request, form)
        response = RedirectResponse("/" if web.settings.web_public else "/signin", status_code=303)
        web.cookies.clear(request, response)
        return response

    return r


def _key_id(sessions, key: str) -> int | None:
    from store.apikeys import verify_key

    with sessions() as session, session.begin():
        row = verify_key(session, key)
        return row.id if row is not None else None
