"""Source lists: our TOML format, OPML subscription lists, and where the bundled ones live."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import lxml.etree

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("feed", "podcast", "thread")
MAX_WEIGHT = 10.0  # a ranking factor: 0 mutes a source, 10 is far more than any story needs


class SourceListError(ValueError):
    pass


@dataclass(frozen=True)
class SourceSpec:
    url: str
    kind: str = "feed"
    topic: str | None = None
    title: str | None = None
    weight: float | None = None  # None: leave the stored weight as it is (1.0 for a new source)


def check_weight(value: object) -> float:
    """A source weight is a number in [0, MAX_WEIGHT]; anything else is a clear error."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_WEIGHT:
        raise SourceListError(f"weight must be a number from 0 to {MAX_WEIGHT:g}, not {value!r}")
    return float(value)


def bundled(relative: str) -> Path:
    """A file shipped with the project (samples/, sources/), found from the working directory first."""
    here = Path.cwd() / relative
    return here if here.exists() else PROJECT_ROOT / relative


def load_sources_toml(path: Path, base_url: str | None = None) -> list[SourceSpec]:
    """`[[source]]` tables with `url` (or `path`, joined to `base_url`), `kind`, `topic`, `title`, `weight`."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SourceListError(f"cannot read {path}: {exc}") from None
    specs = []
    for n, table in enumerate(doc.get("source", []), 1):
        url = table.get("url") or (base_url.rstrip("/") + "/" + table["path"].lstrip("/") if base_url and table.get("path") else None)
        if not url:
            raise SourceListError(f"{path}: source #{n} has no url" + (" (path needs a base URL)" if table.get("path") else ""))
        kind = table.get("kind", "feed")
        if kind not in KINDS:
            raise SourceListError(f"{path}: source #{n} has kind {kind!r}; expected one of {', '.join(KINDS)}")
        try:
            weight = check_weight(table["weight"]) if "weight" in table else None
        except SourceListError as exc:
            raise SourceListError(f"{path}: source #{n}: {exc}") from None
        specs.append(SourceSpec(url=url, kind=kind, topic=table.get("topic"), title=table.get("title"), weight=weight))
    return specs


def parse_opml(data: bytes) -> list[SourceSpec]:
    """Every outline with an xmlUrl, at any depth; a parent outline's title becomes the topic."""
    parser = lxml.etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
    try:
        root = lxml.etree.fromstring(data, parser)
    except lxml.etree.XMLSyntaxError as exc:
        raise SourceListError(f"not an OPML file: {exc}") from None
    if root is None or root.find(".//body") is None:
        raise SourceListError("not an OPML file: no <body> element")
    specs: list[SourceSpec] = []
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if not url:
            continue
        parent = outline.getparent()
        topic = parent.get("title") or parent.get("text") if parent is not None and parent.tag == "outline" else None
        kind = "podcast" if (outline.get("type") or "").lower() in ("podcast", "audio") else "feed"
        specs.append(SourceSpec(url=url, kind=kind, topic=topic, title=outline.get("title") or outline.get("text")))
    return specs
