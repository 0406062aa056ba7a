"""URL helpers for ingest: canonical form, redirector unwrapping and finding links in free text.

Everything here is pure string work: nothing touches the network, so a redirect that can only be
resolved by fetching it (new-style Google News ids, shorteners) is left as it is.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

__all__ = ["URL_RE", "canonical_url", "find_urls", "is_http_url", "unwrap_redirect"]

# --- finding URLs in text ---------------------------------------------------------------------

# Stops at whitespace, quotes and angle brackets, so `<a href="https://x/">` yields just the URL;
# square brackets are never part of a match, so a `[news.google.com]` remnant yields nothing.
# Parentheses are kept only when balanced (Wikipedia-style paths) and trailing sentence
# punctuation is given back to the sentence.
URL_RE = re.compile(
    r"""
    (?<![\w@/])                                  # not the tail of a longer token
    https?://
    (?: [^\s<>"'`\[\](){}|\\^]                   # ordinary URL characters
      | \( [^\s<>"'`\[\](){}|\\^]* \)            # a balanced (...) group
    )+
    (?<![.,;:!?…*])                              # trailing punctuation belongs to the text
    """,
    re.IGNORECASE | re.VERBOSE,
)


def find_urls(text: str) -> list[str]:
    """Every valid http(s) URL in `text`, in order of appearance (repeats kept)."""
    return [m.group(0) for m in URL_RE.finditer(text) if is_http_url(m.group(0))]


# --- validation ---------------------------------------------------------------------------------

_HOST_LABEL_RE = re.compile(r"^(?!-)[\w-]{1,63}(?<!-)$")
_FORBIDDEN_URL_CHARS_RE = re.compile(r"[\s\x00-\x1f\x7f<>\"`]")


def is_http_url(s: object) -> bool:
    """True for an absolute http(s) URL with a plausible host; never raises."""
    if not isinstance(s, str) or not s or _FORBIDDEN_URL_CHARS_RE.search(s):
        return False
    try:
        parts = urlsplit(s)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return False
    return _is_valid_host(parts.hostname)


def _is_valid_host(host: str) -> bool:
    if ":" in host:  # urlsplit strips the brackets of an IPv6 literal
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return False
        return True
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return all(_HOST_LABEL_RE.match(label) for label in labels)


# --- canonical form -----------------------------------------------------------------------------

_TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid", "ref", "ref_src",
        "_hsenc", "_hsmi", "oc", "at_medium", "at_campaign", "cmpid", "spm", "yclid", "ncid",
        "s_kwcid", "gclsrc", "wbraid", "gbraid", "twclid", "ttclid", "li_fat_id", "mkt_tok",
        "vero_id", "_ga", "_gl", "ocid", "sr_share",
    }
)  # fmt: skip
_TRACKING_PREFIXES = ("utm_",)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters that may not appear raw in a URL; they are percent-encoded as UTF-8.
_NEEDS_ENCODING_RE = re.compile(r"[^\x21-\x7e]|[\"<>\\^`{|}]")


def canonical_url(url: str) -> str:
    """One spelling per resource: the key the store deduplicates on.

    Lower-cases scheme and host, punycodes IDNA hosts, drops default ports, the fragment and
    tracking parameters (keeping the others in order), writes an empty path as "/" and
    normalises percent-encoding. Input that is not an http(s) URL comes back stripped.
    """
    stripped = url.strip()
    try:
        parts = urlsplit(stripped)
    except ValueError:
        return stripped
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        return stripped
    netloc = _canonical_netloc(parts.netloc, scheme)
    path = _normalise_percent_encoding(parts.path) or "/"
    query = _strip_tracking_params(parts.query)
    return urlunsplit((scheme, netloc, path, query, ""))


def _canonical_netloc(netloc: str, scheme: str) -> str:
    userinfo, at, hostport = netloc.rpartition("@")
    host, port = _split_host_port(hostport)
    host = _ascii_host(host)
    keep_port = port and port != _DEFAULT_PORTS[scheme]
    port_part = f":{port}" if keep_port else ""
    return f"{userinfo}{at}{host}{port_part}"


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    """("host", port digits) with leading zeros removed; port None when there is no port."""
    if hostport.startswith("["):  # IPv6 literal: the port, if any, follows the bracket
        end = hostport.find("]")
        if end != -1:
            rest = hostport[end + 1 :]
            port = rest[1:] if rest.startswith(":") else None
            return hostport[: end + 1], _normalise_port(port)
        return hostport, None
    host, colon, port = hostport.rpartition(":")
    if colon and (port.isdigit() or port == ""):
        return host, _normalise_port(port)
    return hostport, None


def _normalise_port(port: str | None) -> str | None:
    if port is None or not port.isdigit():
        return port
    return str(int(port))


def _ascii_host(host: str) -> str:
    host = host.lower()
    if host.isascii():
        return host
    try:
        import idna  # IDNA 2008 with UTS 46 mapping; ships with httpx

        return idna.encode(host, uts46=True).decode("ascii")
    except (ImportError, UnicodeError, ValueError):
        return ".".join(_punycode_label(label) for label in host.split("."))


def _punycode_label(label: str) -> str:
    """Fallback when `idna` refuses a host: encode each non-ASCII label on its own."""
    if label.isascii():
        return label
    return "xn--" + label.encode("punycode").decode("ascii")


def _normalise_percent_encoding(component: str) -> str:
    """Decode escapes of unreserved characters, upper-case the rest, encode raw unsafe chars."""

    def fix_escape(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    def encode(match: re.Match[str]) -> str:
        return "".join(f"%{byte:02X}" for byte in match.group(0).encode("utf-8", "surrogatepass"))

    return _NEEDS_ENCODING_RE.sub(encode, _PERCENT_ESCAPE_RE.sub(fix_escape, component))


def _strip_tracking_params(query: str) -> str:
    # Works on the raw "k=v" pairs rather than parse_qsl/urlencode, which would re-encode the
    # values the site chose ("+" vs "%20", "a=" vs "a") and reorder nothing but still differ.
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue
        key = unquote(pair.split("=", 1)[0]).strip().lower()
        if key in _TRACKING_PARAMS or key.startswith(_TRACKING_PREFIXES):
            continue
        kept.append(_normalise_percent_encoding(pair))
    return "&".join(kept)


# --- redirect unwrapping ------------------------------------------------------------------------

MAX_UNWRAP_DEPTH = 5


@dataclass(frozen=True)
class _Redirector:
    """A link whose target sits in a query parameter: host pattern, path pattern, param names."""

    host: re.Pattern[str]
    path: re.Pattern[str]
    params: tuple[str, ...]


def _redirector(host: str, path: str, *params: str) -> _Redirector:
    return _Redirector(re.compile(host), re.compile(path), params)


_REDIRECTORS = (
    _redirector(r"^(?:www\.)?google\.(?:com|[a-z]{2,3}|com?\.[a-z]{2})$", r"^/url$", "q", "url"),
    _redirector(r"^(?:l|lm)\.facebook\.com$", r"^/l\.php$", "u"),
    _redirector(r"^out\.reddit\.com$", r"^/", "url"),
    _redirector(r"^t\.umblr\.com$", r"^/redirect$", "z"),
    _redirector(r"^l\.instagram\.com$", r"^/?$", "u"),
    _redirector(r"^(?:www\.|m\.)?youtube\.com$", r"^/redirect$", "q"),
    _redirector(r"^slack-redir\.net$", r"^/link$", "url"),
    _redirector(r"^(?:www\.)?linkedin\.com$", r"^/safety/go/?$", "url"),
    # Google's cookie-consent wall wraps news.google.com links for EU visitors.
    _redirector(r"^consent\.google\.com$", r"^/ml$", "continue"),
)
_HREF_LI_HOST = "href.li"
_GOOGLE_NEWS_HOST = "news.google.com"
_GOOGLE_NEWS_ARTICLE_RE = re.compile(r"^/(?:__i/rss/rd/)?(?:rss/)?articles/(?P<id>[A-Za-z0-9_-]+)")
_URL_IN_BYTES_RE = re.compile(rb"https?://[\x21-\x7e]+")


def unwrap_redirect(url: str) -> str:
    """The final target of a chain of redirector links (at most five levels).

    A level is unwrapped only when its target is a valid http(s) URL, so a `javascript:` or
    garbage target leaves the redirector link itself. Anything else comes back unchanged.
    """
    current = url
    for _ in range(MAX_UNWRAP_DEPTH):
        target = _unwrap_once(current.strip())
        if target is None:
            break
        current = target
    return current


def _unwrap_once(url: str) -> str | None:
    """The target of one redirector link, or None if `url` is not one (or its target is bad)."""
    if not is_http_url(url):
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if host == _HREF_LI_HOST:
        target = _href_li_target(parts.query)
    elif host == _GOOGLE_NEWS_HOST:
        target = _google_news_target(parts.path)
    else:
        target = _query_param_target(host, parts.path, parts.query)
    return target if target and is_http_url(target) else None


def _query_param_target(host: str, path: str, query: str) -> str | None:
    for redirector in _REDIRECTORS:
        if redirector.host.match(host) and redirector.path.match(path):
            values = parse_qs(query, keep_blank_values=False)
            for name in redirector.params:
                if values.get(name):
                    return values[name][0].strip()
            return None
    return None


def _href_li_target(query: str) -> str | None:
    # href.li puts the whole target after the "?", unencoded: https://href.li/?https://x.y/?a=1
    if not query:
        return None
    return unquote(query) if query.lower().startswith(("http%3a", "https%3a")) else query


def _google_news_target(path: str) -> str | None:
    """Decode an old-format Google News article id; None for new (opaque) ids or garbage.

    Old ids are base64url protobuf: field 1 (a varint), then field 4, a length-prefixed string
    holding the article URL. New ids hold an opaque token ("AU_yqL…") that only Google's own
    endpoint can resolve, which needs the network.
    """
    match = _GOOGLE_NEWS_ARTICLE_RE.match(path)
    if not match:
        return None
    article_id = match.group("id")
    try:
        raw = base64.urlsafe_b64decode(article_id + "=" * (-len(article_id) % 4))
    except (binascii.Error, ValueError):
        return None
    return _first_url_in_protobuf(raw)


def _first_url_in_protobuf(raw: bytes) -> str | None:
    found = _URL_IN_BYTES_RE.search(raw)
    if not found:
        return None
    start, end = found.span()
    # Prefer the declared string length: it ends the URL exactly even when the next field's
    # tag byte happens to be a printable character.
    declared = _length_prefix_before(raw, start)
    if declared is not None and start + declared <= len(raw):
        end = start + declared
    return raw[start:end].decode("ascii", "replace")


def _length_prefix_before(raw: bytes, start: int) -> int | None:
    """The protobuf varint length that ends right before `start`, if one fits there."""
    for width in (1, 2):
        tag_at = start - width - 1
        if tag_at < 0:
            break
        prefix = raw[start - width : start]
        is_varint = all(b & 0x80 for b in prefix[:-1]) and not prefix[-1] & 0x80
        is_string_tag = raw[tag_at] & 0x07 == 2  # wire type 2: length-delimited
        if is_varint and is_string_tag:
            value = 0
            for shift, b in enumerate(prefix):
                value |= (b & 0x7F) << (7 * shift)
            if value >= len("http://x") and (width == 1 or value >= 0x80):
                return value
    return None
