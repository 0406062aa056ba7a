"""Helpers for the email tests: a DailyBrief built by hand from the typed outputs (with hostile
feed text in it), and a real SMTP server on loopback (aiosmtpd) that records what it received."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field

from digest.summary.schema import (
    DailyBrief,
    GlossaryTerm,
    InsightCard,
    PodcastBrief,
    PodcastInsight,
    Sentence,
    SourceRef,
    StoryBrief,
    to_dict,
)
from store.models import Brief
from tests.conftest import make_settings

HOSTILE_SUMMARY = ('Beijing answered the export rules within a day.<script>alert("pwned")</script> '
                   'Labs moved training to domestic chips <img src=x onerror="alert(1)"> within weeks.')


def s(text: str, *passages: int) -> Sentence:
    return Sentence(text=text, passage_ids=list(passages) or [1], support=0.9)


def ref(item_id: int, title: str, publisher: str, kind: str = "article", url: str | None = None,
        start: float | None = None) -> SourceRef:
    return SourceRef(item_id=item_id, title=title, url=url or f"https://news.example/{item_id}", publisher=publisher,
                     kind=kind, published="2026-11-30T08:00:00+00:00", start=start)


def card(n: int, title: str, *, summary: str | None = None, publisher: str = "Policy Wire",
         persona: str = "") -> InsightCard:
    return InsightCard(
        story_id=100 + n, title=title,
        summary=[s(summary or f"Summary sentence of story {n} about export controls and open weights.", 10 * n)],
        key_takeaway=[s(f"Directors should re-check their model supply chain for story {n}.", 10 * n + 1)],
        persona=persona,
        key_insights=[s(f"Insight {n}: open-weight models narrow the gap.", 10 * n + 2)],
        principles=[s(f"Principle {n}: export rules shift where training happens.", 10 * n + 3)],
        in_practice=[s(f"Evaluate open models for story {n} before the next budget.", 10 * n + 4)],
        topics=["Export controls", "Open-weight models"], best_for=["Director of AI/ML", "Policy Maker"],
        sources=[ref(1000 + n, f"Article {n} on chips", publisher),
                 ref(2000 + n, f"Episode {n}", "Geopolitics of Compute", kind="episode",
                     url=f"https://pod.example/ep{n}.mp3", start=754.0)],
        related=[ref(3000 + n, f"Related read {n}", "Silicon Frontier")],
        attribution=f"Original article published by {publisher}.", reading_minutes=3,
    )


def sample_brief(day: str = "2026-12-01") -> DailyBrief:
    cards = [card(1, "Beijing answers the new chip rules", summary=HOSTILE_SUMMARY)]
    cards += [card(n, f"Story number {n} on AI sovereignty") for n in range(2, 7)]  # six: only five are shown
    cards[1].sources[0].url = "javascript:alert(document.cookie)"  # must not become a link
    lead = StoryBrief(
        story_id=101, title="Chinese open models gain ground while export rules tighten",
        paragraphs=[[s("Chinese open-weight models now rival closed US models on reasoning benchmarks.", 501),
                     s("Export controls pushed labs towards efficient training.", 502)],
                    [s("European buyers weigh hosting them locally [2].", 503)]],
        sources=[ref(1001, "Article 1 on chips", "Policy Wire"), ref(1002, "Open weights weekly", "Open Weights Digest")],
        glossary=[GlossaryTerm("Distillation", s("Training a small model on a larger model's outputs.", 504))],
        reading_minutes=3,
    )
    episode = ref(2001, "Geopolitics of Compute #41", "Geopolitics of Compute", kind="episode",
                  url="https://pod.example/ep41", start=125.0)
    other = ref(2002, "Compute Weekly #9", "Compute Weekly", kind="episode", url="https://youtube.com/watch?v=abc",
                start=3725.0)
    podcasts = PodcastBrief(topic="ai-geopolitics", day=day, insights=[
        PodcastInsight(insight=s("Open weights are a deliberate strategy to commoditise the model layer.", 601),
                       episode=episode, story_id=101,
                       related=[PodcastInsight(insight=s("Releasing models for free undercuts US pricing power.", 602),
                                               episode=other, story_id=101)]),
        PodcastInsight(insight=s("Sovereign compute budgets in Europe doubled this year.", 603),
                       episode=ref(2003, "Compute Weekly #10", "Compute Weekly", kind="episode",
                                   url="https://pod.example/cw10", start=61.0), story_id=999),  # no card
    ])
    return DailyBrief(
        topic="ai-geopolitics", topic_title="AI geopolitics", day=day, generated_at=f"{day}T06:00:00+00:00",
        cards=cards, lead=lead, podcasts=podcasts,
        unverified=[Sentence("A Shenzhen lab's distillation paper matches GPT-5 with 1/20th the compute.", [701],
                             unverified=True)],
        story_ids=[c.story_id for c in cards],
    )


# --- a real SMTP server on loopback ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


@dataclass
class Recorder:
    """aiosmtpd handler: keeps every message; `refuse` makes DATA answer with that reply instead;
    `after_accept` runs once the message is stored (a hook to crash the sender at that point)."""

    received: list[Received] = field(default_factory=list)
    refuse: str | None = None
    after_accept: object = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return self.refuse
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        if callable(self.after_accept):
            self.after_accept()
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        return [r.message["Message-ID"] for r in self.received]


class SmtpServer:
    """aiosmtpd's Controller on a free loopback port; stop() and start() again on the same port."""

    def __init__(self, handler: Recorder | None = None, port: int | None = None):
        self.handler = handler or Recorder()
        self.port = port or free_port()
        self._controller = None

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received


def mail_settings(tmp_path, db_url, port, **extra):
    return make_settings(tmp_path, db_url, smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=10.0,
                         smtp_from="briefcast <brief@briefs.example>", public_base_url="https://briefs.example",
                         **extra)


def store_brief(sessions, brief: DailyBrief | None = None) -> int:
    """A stored Brief row: build_daily_brief returns it for its (topic, day) instead of building."""
    brief = brief or sample_brief()
    with sessions() as session, session.begin():
        row = Brief(topic=brief.topic, day=brief.day, payload=to_dict(brief), content_hash="x")
        session.add(row)
        session.flush()
        return row.id
