"""Every `<podcast:transcript>` of every item, read straight from the feed bytes.

feedparser 6 keeps only the last transcript tag of an item (kurtmckee/feedparser#301), so the
feed parser calls `transcripts_by_item` on the same bytes and joins the result to its entries
with `item_key`, which applies the same fallback chain as here.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from store.entry import TranscriptRef

__all__ = ["PODCAST_NAMESPACES", "item_key", "transcripts_by_item"]

PODCAST_NAMESPACES = (
    "https://podcastindex.org/namespace/1.0",
    # The first URI, still declared by many feeds (pc20rss.xml, themnshow.xml in the corpus).
    "https://github.com/Podcastindex-org/podcast-namespace/blob/main/docs/1.0.md",
)
_TRANSCRIPT_TAGS = {f"{{{namespace}}}transcript" for namespace in PODCAST_NAMESPACES}
# A recovering parser keeps an undeclared prefix in the tag name instead of failing.
_UNDECLARED_TRANSCRIPT_TAG = "podcast:transcript"

_ATOM = "http://www.w3.org/2005/Atom"
_ATOM_03 = "http://purl.org/atom/ns#"
_ITEM_TAGS = {
    "item",  # RSS 0.9x / 2.0
    "{http://purl.org/rss/1.0/}item",  # RSS 1.0 (RDF)
    "{http://my.netscape.com/rdf/simple/0.9/}item",  # RSS 0.90
    f"{{{_ATOM}}}entry",
    f"{{{_ATOM_03}}}entry",
}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_DC_LANGUAGE = "{http://purl.org/dc/elements/1.1/}language"
_RDF_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"


def item_key(guid: str | None, enclosure_url: str | None, link: str | None, index: int) -> str:
    """The key of an item: its guid (Atom id), else its enclosure URL, else its link, else '#index'."""
    for candidate in (guid, enclosure_url, link):
        if candidate and candidate.strip():
            return candidate.strip()
    return f"#{index}"


def transcripts_by_item(feed: bytes) -> dict[str, list[TranscriptRef]]:
    """Transcript refs per item key, in document order; items without any are left out.

    Never raises: bytes that are not XML give {}.
    """
    root = _parse(feed)
    if root is None:
        return {}
    channel_language = _channel_language(root)
    result: dict[str, list[TranscriptRef]] = {}
    for index, item in enumerate(_items(root)):
        refs = _transcript_refs(item, _inherited_language(item) or channel_language)
        if refs:
            # Two items sharing a guid look the same to the caller, so their tags are pooled.
            result.setdefault(_key_of(item, index), []).extend(refs)
    return result


def _parse(feed: bytes) -> Any | None:
    # recover: broken feeds still yield their tags; no entity resolution or network: XXE is inert.
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=False)
    try:
        return etree.fromstring(_strip_leading_whitespace(feed), parser)
    except (etree.LxmlError, ValueError, TypeError):
        return None


def _strip_leading_whitespace(feed: bytes) -> bytes:
    # An XML declaration after a blank line is a fatal error, and common in generated feeds.
    stripped = feed.lstrip(b" \t\r\n")
    return stripped if stripped.startswith(b"<?xml") else feed


def _items(root: Any) -> list[Any]:
    return [element for element in root.iter() if element.tag in _ITEM_TAGS]


def _transcript_refs(item: Any, default_language: str | None) -> list[TranscriptRef]:
    refs = []
    for tag in item.iter():
        if not _is_transcript_tag(tag):
            continue
        url = (tag.get("url") or "").strip()
        if not url:
            continue  # url is required: nothing to fetch without it
        refs.append(
            TranscriptRef(
                url=url,
                type=(tag.get("type") or "").strip(),
                language=_attribute(tag, "language") or default_language,
                rel=_attribute(tag, "rel"),
            )
        )
    return refs


def _is_transcript_tag(element: Any) -> bool:
    tag = element.tag
    return isinstance(tag, str) and (tag in _TRANSCRIPT_TAGS or tag == _UNDECLARED_TRANSCRIPT_TAG)


def _attribute(element: Any, name: str) -> str | None:
    return (element.get(name) or "").strip() or None


def _key_of(item: Any, index: int) -> str:
    return item_key(_guid(item), _enclosure_url(item), _link(item), index)


def _guid(item: Any) -> str | None:
    about = _attribute(item, _RDF_ABOUT)  # feedparser uses an RSS 1.0 item's rdf:about as its id
    if about:
        return about
    for child in item:
        if _local_name(child) in ("guid", "id") and _namespace(child) in ("", _ATOM, _ATOM_03):
            return _text(child)
    return None


def _enclosure_url(item: Any) -> str | None:
    for child in item:
        if _local_name(child) == "enclosure" and _namespace(child) == "":
            return child.get("url")
        if _is_atom_link(child) and child.get("rel") == "enclosure":
            return child.get("href")
    return None


def _link(item: Any) -> str | None:
    for child in item:
        if _local_name(child) == "link" and _namespace(child) in ("", "http://purl.org/rss/1.0/"):
            return _text(child)
        if _is_atom_link(child) and child.get("rel", "alternate") == "alternate":
            return child.get("href")
    return None


def _is_atom_link(element: Any) -> bool:
    return _local_name(element) == "link" and _namespace(element) in (_ATOM, _ATOM_03)


def _channel_language(root: Any) -> str | None:
    """The feed-level language: RSS <language>, Dublin Core <dc:language>, or Atom xml:lang."""
    rdf_channel = "{http://purl.org/rss/1.0/}channel"
    for path in ("channel/language", f"channel/{_DC_LANGUAGE}", f"{rdf_channel}/{_DC_LANGUAGE}"):
        found = root.find(path)
        if found is not None and _text(found):
            return _text(found)
    return _attribute(root, _XML_LANG)


def _inherited_language(item: Any) -> str | None:
    # xml:lang on an Atom entry (or anything between it and the root) beats the feed's language.
    element = item
    while element is not None and element.getparent() is not None:
        language = _attribute(element, _XML_LANG)
        if language:
            return language
        element = element.getparent()
    return None


def _text(element: Any) -> str | None:
    # Entities are never resolved (see _parse): a reference such as &xxe; stays as its own text.
    text = "".join(element.itertext()).strip()
    return text or None


def _local_name(element: Any) -> str:
    return _split_tag(element)[1]


def _namespace(element: Any) -> str:
    return _split_tag(element)[0]


def _split_tag(element: Any) -> tuple[str, str]:
    """(namespace, local name); not etree.QName, which rejects a recovered 'prefix:name' tag."""
    tag = element.tag
    if not isinstance(tag, str):  # comments and processing instructions
        return "", ""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag
