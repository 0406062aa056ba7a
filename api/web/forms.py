"""Reading a posted form without python-multipart: forms here are small and url-encoded (the app
caps every body at 64 KB before this reads it)."""

from __future__ import annotations

import urllib.parse

from fastapi import Request

MAX_FORM_BYTES = 32 * 1024


class FormError(Exception):
    pass


async def read_form(request: Request) -> dict[str, list[str]]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("expected a form (application/x-www-form-urlencoded)")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise FormError("the form is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8") from None
    return urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=200)


def first(form: dict[str, list[str]], name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0] if values else default
