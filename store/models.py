"""SQLAlchemy 2 models: sources, fetch attempts, items, transcript segments, tombstones."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in and out, on SQLite (which stores naive) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SafeString(TypeDecorator):
    """VARCHAR that never refuses feed data: NUL characters removed, over-long values cut.

    Feeds carry 3,000-character links and `&#0;` entities; SQLite would store them, PostgreSQL
    would reject the whole source's transaction.
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = str(value).replace("\x00", "")
        return value[: self.impl.length] if self.impl.length else value


class SafeText(TypeDecorator):
    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else str(value).replace("\x00", "")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(SafeString(2048), unique=True)
    kind: Mapped[str] = mapped_column(SafeString(16), default="feed")  # feed | podcast | thread
    topic: Mapped[str | None] = mapped_column(SafeString(128))
    title: Mapped[str | None] = mapped_column(SafeString(512))
    site_url: Mapped[str | None] = mapped_column(SafeString(2048))
    language: Mapped[str | None] = mapped_column(SafeString(32))
    etag: Mapped[str | None] = mapped_column(SafeString(512))
    last_modified: Mapped[str | None] = mapped_column(SafeString(128))
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[str | None] = mapped_column(SafeString(16))
    last_error: Mapped[str | None] = mapped_column(SafeText())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    items: Mapped[list[Item]] = relationship(back_populates="source")


class FetchAttempt(Base):
    __tablename__ = "fetch_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(SafeString(16))  # new | not_modified | failed
    http_status: Mapped[int | None] = mapped_column(Integer)
    etag: Mapped[str | None] = mapped_column(SafeString(512))
    last_modified: Mapped[str | None] = mapped_column(SafeString(128))
    error: Mapped[str | None] = mapped_column(SafeText())
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    bytes_read: Mapped[int] = mapped_column(Integer, default=0)
    new_items: Mapped[int] = mapped_column(Integer, default=0)
    updated_items: Mapped[int] = mapped_column(Integer, default=0)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("source_id", "stable_key", name="uq_items_source_stable_key"),
        Index("ix_items_source_canonical_url", "source_id", "canonical_url"),
        Index("ix_items_published", "published"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    stable_key: Mapped[str] = mapped_column(SafeString(64))  # sha256 of the id chain's winner
    guid: Mapped[str | None] = mapped_column(SafeString(2048))
    url: Mapped[str | None] = mapped_column(SafeString(2048))
    canonical_url: Mapped[str | None] = mapped_column(SafeString(2048))
    content_hash: Mapped[str] = mapped_column(SafeString(64), index=True)  # of the stored title + text
    entry_hash: Mapped[str] = mapped_column(SafeString(64))  # of what the feed said: unchanged -> skip
    kind: Mapped[str] = mapped_column(SafeString(16), default="article")  # article | episode | post
    title: Mapped[str] = mapped_column(SafeText(), default="")
    author: Mapped[str | None] = mapped_column(SafeString(512))
    language: Mapped[str | None] = mapped_column(SafeString(32))
    published: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated: Mapped[datetime | None] = mapped_column(UTCDateTime())
    text: Mapped[str] = mapped_column(SafeText(), default="")
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    text_source: Mapped[str] = mapped_column(SafeString(16), default="feed")  # feed | extracted | transcript | asr
    audio_url: Mapped[str | None] = mapped_column(SafeString(2048))
    transcript_status: Mapped[str | None] = mapped_column(SafeString(16))  # published | queued | asr | failed
    transcript_url: Mapped[str | None] = mapped_column(SafeString(2048))
    transcript_type: Mapped[str | None] = mapped_column(SafeString(64))
    passages_hash: Mapped[str | None] = mapped_column(SafeString(64))  # content_hash the passages were cut from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    source: Mapped[Source] = relationship(back_populates="items")
    segments: Mapped[list[TranscriptSegment]] = relationship(
        back_populates="item", cascade="all, delete-orphan", order_by="TranscriptSegment.position"
    )


class TranscriptSegment(Base):
    __tablename__ = "transcript_segments"
    __table_args__ = (UniqueConstraint("item_id", "position", name="uq_segments_item_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    start: Mapped[float | None] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float)
    speaker: Mapped[str | None] = mapped_column(SafeString(256))
    text: Mapped[str] = mapped_column(SafeText())

    item: Mapped[Item] = relationship(back_populates="segments")


class Passage(Base):
    """A window of an item's text: what is embedded, searched and cited. Its id is its FAISS id."""

    __tablename__ = "passages"
    __table_args__ = (UniqueConstraint("item_id", "position", name="uq_passages_item_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(SafeText())
    start: Mapped[float | None] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float)
    speaker: Mapped[str | None] = mapped_column(SafeString(256))
    content_hash: Mapped[str] = mapped_column(SafeString(64))
    embedded_model: Mapped[str | None] = mapped_column(SafeString(256), index=True)  # None: not in the index


class ApiKey(Base):
    """An HTTP API key, stored as a SHA-256 hash: keys are 256-bit random tokens, so a fast hash
    is as safe as a slow one and costs nothing per request."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(SafeString(128))
    prefix: Mapped[str] = mapped_column(SafeString(16))  # shown in listings, to tell keys apart
    key_hash: Mapped[str] = mapped_column(SafeString(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Tombstone(Base):
    """A deleted item: a refetch of its feed must not bring it back."""

    __tablename__ = "tombstones"
    __table_args__ = (UniqueConstraint("source_id", "stable_key", name="uq_tombstones_source_stable_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    stable_key: Mapped[str] = mapped_column(SafeString(64))
    canonical_url: Mapped[str | None] = mapped_column(SafeString(2048))
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    reason: Mapped[str | None] = mapped_column(SafeText())
