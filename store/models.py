"""SQLAlchemy 2 models: sources, fetch attempts, items, transcript segments, tombstones, passages,
API keys; stories, scores, summaries, model calls, briefs, subscribers and deliveries."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    JSON,
    LargeBinary,
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
    """Timezone-aware UTC in and out, on SQLite (which stores naive) as on PostgreSQL.

    An instant outside datetime's range in UTC (0001-01-01T00:00+23:59 is the day before year 1)
    is clipped to datetime.min or datetime.max, as a bound or a stored date: converting it raised
    OverflowError inside SQLAlchemy, a 500 that quoted the statement."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # only possible within a day of either end: near year 1 below, near 9999 above
            return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)

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


NEVER_REUSED = {"sqlite_autoincrement": True}  # SQLite reuses a deleted last rowid otherwise (0010)


class Source(Base):
    __tablename__ = "sources"
    __table_args__ = (NEVER_REUSED,)

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
    # How much this source's stories count in the daily ranking (digest.rank); 1 = neutral.
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
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
        NEVER_REUSED,  # the owner map holds item ids
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
    # Why the stored text (or transcript) is shorter than what was fetched (store/caps.py); None: whole.
    text_capped: Mapped[str | None] = mapped_column(SafeText())
    audio_url: Mapped[str | None] = mapped_column(SafeString(2048))
    transcript_status: Mapped[str | None] = mapped_column(SafeString(16))  # published | queued | asr | failed
    transcript_url: Mapped[str | None] = mapped_column(SafeString(2048))
    transcript_type: Mapped[str | None] = mapped_column(SafeString(64))
    transcript_model: Mapped[str | None] = mapped_column(SafeString(128))  # the ASR model, for status 'asr'
    transcript_error: Mapped[str | None] = mapped_column(SafeText())  # why status is 'failed'
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
    __table_args__ = (UniqueConstraint("item_id", "position", name="uq_passages_item_position"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(SafeText())
    start: Mapped[float | None] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float)
    speaker: Mapped[str | None] = mapped_column(SafeString(256))
    content_hash: Mapped[str] = mapped_column(SafeString(64))
    embedded_model: Mapped[str | None] = mapped_column(SafeString(256), index=True)  # None: not in the index


SEQ = BigInteger().with_variant(Integer, "sqlite")  # SQLite's AUTOINCREMENT needs INTEGER PRIMARY KEY


class PassageVector(Base):
    """A passage's vector for one encoder (float32, unit length), in the database: the one source of
    truth every replica's in-memory FAISS mirror is synced from (embed/mirror.py).

    `seq` only grows (AUTOINCREMENT / a sequence): a replica reads the rows past the last seq it
    holds. It is written in the transaction that marks the passage embedded (store/vectors.py), so a
    passage marked embedded always has its vector; deleting the passage deletes it (and leaves a
    PassageTombstone)."""

    __tablename__ = "passage_vectors"
    __table_args__ = (UniqueConstraint("passage_id", "model_id", name="uq_passage_vectors_passage_model"),
                      Index("ix_passage_vectors_model_seq", "model_id", "seq"), NEVER_REUSED)

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    passage_id: Mapped[int] = mapped_column(ForeignKey("passages.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(SafeString(256))
    dim: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PassageTombstone(Base):
    """A deleted passage, written by a database trigger on every delete from `passages` (whoever
    deletes it: a re-split, a purge, an item's cascade): replicas drop its vector."""

    __tablename__ = "passage_tombstones"
    __table_args__ = (NEVER_REUSED,)

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    passage_id: Mapped[int] = mapped_column(BigInteger)


class VectorQuantizer(Base):
    """The IVF centroids of one encoder's vectors, trained once and shared, so every replica's
    IVF mirror assigns a vector to the same list."""

    __tablename__ = "vector_quantizers"

    model_id: Mapped[str] = mapped_column(SafeString(256), primary_key=True)
    nlist: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


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


# --- digest: stories, scores, summaries, briefs, deliveries (issues 4 and 5) ------------------


class Story(Base):
    """Items from any sources, kinds and languages that tell the same story."""

    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(SafeText(), default="")
    lead_item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))
    first_seen: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    # Distinct independent publishers: syndicated copies and reposts of one source count once.
    corroboration: Mapped[int] = mapped_column(Integer, default=0)
    content_hash: Mapped[str | None] = mapped_column(SafeString(64))  # of its members' content: the summary cache key
    centroid: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32 mean of member unit vectors (not normalised): average link
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    members: Mapped[list[StoryItem]] = relationship(back_populates="story", cascade="all, delete-orphan")


class StoryItem(Base):
    __tablename__ = "story_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), unique=True)
    similarity: Mapped[float] = mapped_column(Float, default=1.0)  # to the story when it joined
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))  # near-duplicate copy
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    story: Mapped[Story] = relationship(back_populates="members", foreign_keys=[story_id])


class StoryScore(Base):
    """One story's ranking for a topic on a day, with every part kept for `briefcast explain`."""

    __tablename__ = "story_scores"
    __table_args__ = (UniqueConstraint("story_id", "topic", "day", name="uq_story_scores_story_topic_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(SafeString(128))
    day: Mapped[str] = mapped_column(SafeString(10))  # YYYY-MM-DD in the topic's time zone
    relevance: Mapped[float] = mapped_column(Float, default=0.0)
    corroboration: Mapped[float] = mapped_column(Float, default=0.0)
    novelty: Mapped[float] = mapped_column(Float, default=0.0)
    recency: Mapped[float] = mapped_column(Float, default=0.0)
    source_weight: Mapped[float] = mapped_column(Float, default=0.0)
    total: Mapped[float] = mapped_column(Float, default=0.0)
    rank: Mapped[int | None] = mapped_column(Integer)  # after diversification; None: not selected
    details: Mapped[dict | None] = mapped_column(JSON)  # the inputs behind each part
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Summary(Base):
    """A generated output (insight card, story brief, podcast insights), cached by content hash."""

    __tablename__ = "summaries"
    __table_args__ = (UniqueConstraint("kind", "content_hash", "backend", "model", "persona",
                                       name="uq_summaries_kind_hash_backend_model_persona"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(SafeString(32))  # card | story_brief | podcast_insights
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    content_hash: Mapped[str] = mapped_column(SafeString(64))
    backend: Mapped[str] = mapped_column(SafeString(32))
    model: Mapped[str] = mapped_column(SafeString(256), default="")
    persona: Mapped[str] = mapped_column(SafeString(128), default="")
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelCall(Base):
    """Every generative model call: what was asked (the messages, and their hash), of whom, what came
    back, at what cost, with what outcome."""

    __tablename__ = "model_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    backend: Mapped[str] = mapped_column(SafeString(32))
    model: Mapped[str] = mapped_column(SafeString(256), default="")
    purpose: Mapped[str] = mapped_column(SafeString(64), default="")  # card | story_brief | judge | ...
    prompt_hash: Mapped[str] = mapped_column(SafeString(64))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    outcome: Mapped[str] = mapped_column(SafeString(16))  # ok | invalid | retried | error | fallback
    error: Mapped[str | None] = mapped_column(SafeText())
    prompt: Mapped[str | None] = mapped_column(SafeText())  # the messages as JSON
    response: Mapped[str | None] = mapped_column(SafeText())  # the reply's text as the model wrote it


class Brief(Base):
    """A topic's brief for a day, as rendered from; built once, sent from this copy."""

    __tablename__ = "briefs"
    __table_args__ = (UniqueConstraint("topic", "day", name="uq_briefs_topic_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(SafeString(128))
    day: Mapped[str] = mapped_column(SafeString(10))
    payload: Mapped[dict] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(SafeString(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BriefStory(Base):
    """Which stories a brief carried: an earlier brief's story is no longer novel."""

    __tablename__ = "brief_stories"
    __table_args__ = (UniqueConstraint("brief_id", "story_id", name="uq_brief_stories_brief_story"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brief_id: Mapped[int] = mapped_column(ForeignKey("briefs.id", ondelete="CASCADE"), index=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(Integer)


def new_manage_secret() -> str:
    import secrets

    return secrets.token_urlsafe(32)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(SafeString(320), unique=True)
    name: Mapped[str | None] = mapped_column(SafeString(256))
    persona: Mapped[str | None] = mapped_column(SafeString(128))
    timezone: Mapped[str] = mapped_column(SafeString(64), default="UTC")
    topics: Mapped[list] = mapped_column(JSON, default=list)
    unsubscribe_token: Mapped[str] = mapped_column(SafeString(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    send_time: Mapped[str | None] = mapped_column(SafeString(5))  # local HH:MM; None: the topic's send time
    # Keys the settings-page link (digest.manage_links): unlike the unsubscribe token, it never
    # appears in a header a mail provider or the unsubscribe mailbox sees.
    manage_secret: Mapped[str | None] = mapped_column(SafeString(64), default=new_manage_secret)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Delivery(Base):
    """Exactly once: claimed (unique idempotency key) before sending, completed after."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(SafeString(64), unique=True)
    channel: Mapped[str] = mapped_column(SafeString(16))  # email | slack
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id", ondelete="SET NULL"), index=True)
    target: Mapped[str] = mapped_column(SafeString(320))  # an address or a Slack channel
    topic: Mapped[str] = mapped_column(SafeString(128))
    day: Mapped[str] = mapped_column(SafeString(10))
    brief_id: Mapped[int | None] = mapped_column(ForeignKey("briefs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(SafeString(16), default="claimed")  # claimed | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(SafeString(256))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    message_id: Mapped[str | None] = mapped_column(SafeString(512))  # Message-ID / Slack ts: lets a retry check
    error: Mapped[str | None] = mapped_column(SafeText())


class SlackRequest(Base):
    """A Slack event or command already taken on, keyed by its event_id / trigger_id: Slack's
    retries of it (X-Slack-Retry-Num) are acknowledged without doing the work again."""

    __tablename__ = "slack_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(SafeString(160), unique=True)
    kind: Mapped[str] = mapped_column(SafeString(32))  # event | command
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
