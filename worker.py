"""The Celery app: the same stage functions as `briefcast run`, as thin tasks over a Redis broker.

Tasks take ids, re-load their rows, return quietly when the row is gone, and return ids or counts.
Every task is idempotent and its work is derived from the database, so a task delivered twice
does nothing twice and a task lost with the broker is enqueued again by the next beat tick.

Queues (a worker takes `-Q` any of them):
  fetch      one task per source; sources of one host share `worker_host_slots` Redis slots across
             all workers (each refresh keeps its own per-host limit inside)
  embed      embed, then cluster. index_source=files: one index writer; run its worker with
             `-c 1`; a Redis lease and the index's file lock hold even when someone does not.
             index_source=database: embed workers on any number of machines claim different
             passages in the database (SKIP LOCKED); clustering stays one at a time (a lease)
  summarise  building a topic's brief calls the model server: `worker_summarise_slots` at once
  deliver    email and Slack, exactly once per subscriber, topic and day (delivery rows)
  asr        speech recognition for episodes without a published transcript

Delivery: `acks_late` + `task_reject_on_worker_lost`: a task is acknowledged after it finished,
so a worker killed mid-task leaves it unacknowledged. A killed pool process is noticed by its
parent and the task is requeued at once; when the whole worker dies, Redis hands the task to
another worker after `visibility_timeout` seconds (checked every `unacked_restore_seconds`).

Settings are read once per worker, lazily, when the Celery configuration is first needed (at
worker start-up), or handed in by `briefcast worker` / `briefcast beat`. torch, faiss and
llama_cpp stay out of this module's import path: stages are imported inside the tasks.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import redis
import sqlalchemy.exc
from celery import Celery, Task, signals
from kombu import Exchange, Queue

from store.settings import Settings

log = logging.getLogger("briefcast.worker")

QUEUES = ("fetch", "embed", "summarise", "deliver", "asr")
ROUTES = {
    "briefcast.refresh_due": {"queue": "fetch"},
    "briefcast.fetch_source": {"queue": "fetch"},
    "briefcast.embed": {"queue": "embed"},
    "briefcast.cluster": {"queue": "embed"},
    "briefcast.briefs_due": {"queue": "summarise"},
    "briefcast.build_brief": {"queue": "summarise"},
    "briefcast.send_brief": {"queue": "deliver"},
    "briefcast.deliver_email": {"queue": "deliver"},
    "briefcast.post_slack": {"queue": "deliver"},
    "briefcast.transcribe": {"queue": "asr"},
}
KEY = "briefcast:"  # every Redis key this module sets starts so


class SlotBusy(Exception):
    """Every slot of a shared resource (a feed host, the model server) is taken: try again later."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    """The errors worth retrying: the network, the database or the broker went away for a while."""
    from filelock import Timeout as IndexLockTimeout

    errors: list[type[BaseException]] = [
        httpx.TransportError, sqlalchemy.exc.OperationalError, redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError, IndexLockTimeout, SlotBusy,
    ]
    errors.extend(_delivery_errors())
    return tuple(errors)


def _delivery_errors() -> list[type[BaseException]]:
    from digest.delivery import TransientDeliveryError

    return [TransientDeliveryError]


# --- per-process runtime: settings once, connections and models lazily ------------------------


class Runtime:
    """What one worker process builds once: the settings, database sessions, Redis, the encoder."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self.reset()

    def reset(self) -> None:
        """Forget connections (a forked pool process must not share its parent's sockets)."""
        self._sessions = None
        self._redis: redis.Redis | None = None
        self._encoder = None
        self._multilingual = None
        self._transcriber = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings()
        return self._settings

    def use(self, settings: Settings) -> None:
        self._settings = settings
        self.reset()

    def sessions(self):
        if self._sessions is None:
            from store.db import open_database

            self._sessions = open_database(self.settings.db_url, self.settings.auto_migrate)
        return self._sessions

    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.settings.broker_url, socket_timeout=30, socket_connect_timeout=10)
        return self._redis

    def encoder(self):
        if self._encoder is None:
            from embed.runtime import make_encoder

            self._encoder = make_encoder(self.settings)
        return self._encoder

    def multilingual(self):
        """The second index's embedding (USE-m3 loads on first use, then stays), or None when off."""
        if self._multilingual is None:
            from embed.runtime import make_multilingual_embedding

            self._multilingual = make_multilingual_embedding(self.settings) or False
        return self._multilingual or None

    def transcriber(self):
        """The ASR model, built on first use in this process (loading it is not cheap)."""
        if self._transcriber is None:
            from ingest.asr.stage import make_transcriber

            self._transcriber = make_transcriber(self.settings)
        return self._transcriber


runtime = Runtime()


def queues() -> list[Queue]:
    """Each queue on its own direct exchange and routing key, both named after it (a bare
    Queue(name) is bound to the default queue's exchange and key: every queue under `fetch`)."""
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]


def celery_config(settings: Settings) -> dict:
    from digest.schedule import beat_schedule

    transport = {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": settings.unacked_restore_seconds,
        "unacked_restore_throttle": 1,  # every sweep scans: unacked_restore_seconds is the one knob
    }
    return dict(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend or settings.broker_url,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        task_serializer="json", result_serializer="json",
        accept_content=["json"], result_accept_content=["json"],
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_queues=queues(), task_default_queue="fetch", task_routes=ROUTES,
        broker_connection_retry_on_startup=True, broker_connection_max_retries=None,  # Redis restarts: wait
        # A task running when the broker connection drops can no longer be acknowledged: stop it
        # rather than let it run on while its redelivered copy runs elsewhere.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        result_expires=24 * 3600,
        worker_send_task_events=True, task_send_sent_event=True,  # Flower
        timezone="UTC", enable_utc=True,
        beat_schedule=beat_schedule(settings),
    )


app = Celery("briefcast")
app.add_defaults(lambda: celery_config(runtime.settings))  # evaluated when the config is first read


def use_settings(settings: Settings) -> Celery:
    """Run the app with these settings (the CLI built them); before or after its config was read."""
    runtime.use(settings)
    if app.configured:
        app.conf.update(celery_config(settings))
    return app


@signals.worker_process_init.connect
def _fresh_connections(**_) -> None:
    runtime.reset()


class StageTask(Task):
    """Retries only named transient errors, with exponential backoff and full jitter."""

    autoretry_for = _transient_errors()
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True

    @property
    def max_retries(self) -> int:  # read at retry time: the settings of this worker
        return runtime.settings.task_max_retries


# --- leases: Redis keys owned by one task ------------------------------------------------------

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end"


class Lease:
    """A Redis key held by one task (its id as the value) for `ttl` seconds, kept alive by a
    thread while the task runs (`with lease:`), so `ttl` can be short.

    The same task redelivered after its worker died takes its lease back at once; anyone else
    waits at most `ttl` seconds for a dead holder's lease to expire.
    """

    def __init__(self, client: redis.Redis, key: str, owner: str, ttl: int) -> None:
        self.client, self.key, self.owner, self.ttl = client, KEY + key, owner, max(1, ttl)
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.lost = False  # set by the keeper when the key was no longer ours

    def acquire(self) -> bool:
        if self.client.set(self.key, self.owner, nx=True, ex=self.ttl):
            return True
        return bool(self.client.eval(_EXTEND, 1, self.key, self.owner, self.ttl))

    def release(self) -> None:
        self._stop.set()
        try:
            self.client.eval(_RELEASE, 1, self.key, self.owner)
        except redis.exceptions.RedisError:  # the broker went away: the lease expires by itself
            log.warning("could not release %s; it expires in %s s", self.key, self.ttl)

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.client.eval(_EXTEND, 1, self.key, self.owner, self.ttl):
                    self.lost = True  # expired (Redis was away longer than ttl) and maybe taken
                    log.warning("lost %s: another worker may hold it now", self.key)
            except redis.exceptions.RedisError:
                log.warning("could not extend %s", self.key)

    def __enter__(self) -> Lease:
        self._keeper = threading.Thread(target=self._keep_alive, name=f"lease {self.key}", daemon=True)
        self._keeper.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def take_slot(name: str, slots: int, owner: str, *, wait: float) -> Lease:
    """One of `slots` leases `slot:name:0..n-1`, waiting up to `wait` seconds; SlotBusy after."""
    client, ttl = runtime.redis(), runtime.settings.worker_lease_seconds
    deadline = time.monotonic() + wait
    while True:
        for n in range(max(1, slots)):
            lease = Lease(client, f"slot:{name}:{n}", owner, ttl)
            if lease.acquire():
                return lease
        if time.monotonic() >= deadline:
            raise SlotBusy(f"all {slots} slots of {name} are taken")
        time.sleep(random.uniform(0.2, 0.6))


def enqueue_once(task, key: str, ttl: int, *args) -> bool:
    """Send `task` unless the same one is already waiting in its queue (the task clears the key)."""
    if not runtime.redis().set(KEY + "queued:" + key, "1", nx=True, ex=max(1, ttl)):
        return False
    task.apply_async(args=args)
    return True


def _unqueue(key: str) -> None:
    runtime.redis().delete(KEY + "queued:" + key)


@contextmanager
def _queued_until_done(task: Task, key: str):
    """Keep the task's enqueue_once key while it runs and while its retry is pending, so beat does
    not send a second copy meanwhile; clear it when it succeeded or failed for good (the next
    tick then tries again)."""
    try:
        yield
    except BaseException as exc:
        will_retry = isinstance(exc, task.autoretry_for) and task.request.retries < task.max_retries
        if not will_retry:
            _unqueue(key)
        raise
    _unqueue(key)


def _owner(task: Task) -> str:
    return task.request.id or f"local-{random.getrandbits(64):x}"


# --- fetch ---------------------------------------------------------------------------------------


@app.task(name="briefcast.refresh_due", base=StageTask)
def refresh_due() -> list[int]:
    """Beat: one fetch task per due source not already waiting in the queue; returns their ids."""
    from store import repo

    with runtime.sessions()() as session:
        due = [s.id for s in repo.due_sources(session, datetime.now(UTC))]
    ttl = runtime.settings.refresh_minutes * 60
    return [sid for sid in due if enqueue_once(fetch_source, f"fetch:{sid}", ttl, sid)]


@app.task(name="briefcast.fetch_source", base=StageTask, bind=True)
def fetch_source(self: Task, source_id: int, force: bool = False) -> dict:
    """Refresh one source (when due, or always with `force`); returns its outcome."""
    from ingest.refresh import refresh
    from store.models import Source

    _unqueue(f"fetch:{source_id}")
    settings, owner = runtime.settings, _owner(self)
    with runtime.sessions()() as session:
        source = session.get(Source, source_id)
        url = source.url if source is not None else None
    if url is None:
        return {"source_id": source_id, "status": "gone"}
    try:
        busy = take_slot(f"source:{source_id}", 1, owner, wait=0)
    except SlotBusy:
        return {"source_id": source_id, "status": "busy"}  # another worker refreshes it right now
    with busy:
        host = urlsplit(url).hostname or "?"
        with take_slot(f"host:{host}", settings.worker_host_slots, owner, wait=settings.total_timeout):
            report = refresh(settings, runtime.sessions(), force=force, source_ids=[source_id])
    return _after_fetch(source_id, report)


def _after_fetch(source_id: int, report) -> dict:
    if not report.sources:
        return {"source_id": source_id, "status": "not_due"}
    outcome = report.sources[0]
    if outcome.new_items or outcome.updated_items:
        enqueue_once(embed, "embed", runtime.settings.worker_embed_every_seconds)
    return {"source_id": source_id, "status": outcome.status, "new_items": outcome.new_items,
            "updated_items": outcome.updated_items, "error": outcome.error}


# --- embed and cluster -------------------------------------------------------------------------


@app.task(name="briefcast.embed", base=StageTask, bind=True)
def embed(self: Task) -> dict:
    """Passages and vectors for every new or changed item; one writer at a time."""
    from embed.pipeline import embed_pending
    from embed.runtime import index_store

    _unqueue("embed")
    settings = runtime.settings
    if settings.index_source == "database":
        return _embed_into_database()
    try:
        lease = take_slot("embed", 1, _owner(self), wait=0)
    except SlotBusy:
        return {"status": "busy"}  # the previous run goes on
    with lease:
        report = embed_pending(runtime.sessions(), runtime.encoder(), index_store(settings),
                               batch=settings.embed_batch, index_kind=settings.index_kind, nprobe=settings.nprobe,
                               multilingual=runtime.multilingual())
    if report.items_split or report.passages_embedded or report.passages_removed:
        enqueue_once(cluster, "cluster", settings.worker_embed_every_seconds)
    return {"status": "done", "items_split": report.items_split, "passages_embedded": report.passages_embedded,
            "passages_removed": report.passages_removed, "index_count": report.index_count}


def _embed_into_database() -> dict:
    """index_source=database: no index file and no lease; workers on every machine claim different
    passages in the database (embed/db_embed.py), so several run at once."""
    from embed.db_embed import embed_into_database

    settings = runtime.settings
    report = embed_into_database(runtime.sessions(), runtime.encoder(), batch=settings.embed_batch,
                                 multilingual=runtime.multilingual())
    if report.items_split or report.passages_embedded:
        enqueue_once(cluster, "cluster", settings.worker_embed_every_seconds)
    return {"status": "done", "items_split": report.items_split, "passages_embedded": report.passages_embedded,
            "passages_removed": report.passages_removed, "index_count": report.index_count}


@app.task(name="briefcast.cluster", base=StageTask, bind=True)
def cluster(self: Task) -> dict:
    """Items not yet in a story join one (or start one); returns the stories touched."""
    from digest.cluster import cluster_pending

    _unqueue("cluster")
    try:
        lease = take_slot("cluster", 1, _owner(self), wait=0)
    except SlotBusy:
        return {"status": "busy"}  # the previous run, or a brief being built, goes on
    with lease:
        report = cluster_pending(runtime.settings, runtime.sessions(), encoder=runtime.encoder())
    return {"status": "done", "items": report.items, "story_ids": report.story_ids}


# --- briefs and delivery ------------------------------------------------------------------------


@app.task(name="briefcast.briefs_due", base=StageTask)
def briefs_due() -> dict:
    """Beat: build the brief of every topic whose local send time has passed today, then send it
    to each subscriber whose own local send time has passed. Everything is derived from the
    database (which brief exists, which delivery is sent), so a lost task is simply enqueued
    again on the next tick; Redis keys only stop a second beat from enqueuing it twice."""
    from digest.schedule import due_briefs, send_times
    from digest.topics import list_topics

    settings, built, sending = runtime.settings, [], []
    for topic, day in due_briefs(send_times(list_topics(settings).values())):
        brief_id = _stored_brief_id(topic, day)
        if brief_id is None:
            if enqueue_once(build_brief, f"brief:{topic}:{day}", settings.worker_brief_retry_seconds, topic, day):
                built.append([topic, day])
        else:
            sending += _send_due(brief_id)
    return {"building": built, "deliveries": sending}


def _stored_brief_id(topic: str, day: str) -> int | None:
    import sqlalchemy as sa

    from store.models import Brief

    with runtime.sessions()() as session:
        return session.scalar(sa.select(Brief.id).where(Brief.topic == topic, Brief.day == day))


@app.task(name="briefcast.build_brief", base=StageTask, bind=True)
def build_brief(self: Task, topic: str, day: str) -> int:
    """The topic's brief of the day (built once; the stored one afterwards), then its delivery."""
    from datetime import date

    from digest.compose import build_daily_brief

    settings, owner = runtime.settings, _owner(self)
    with _queued_until_done(self, f"brief:{topic}:{day}"):
        with take_slot("summarise", settings.worker_summarise_slots, owner, wait=30):
            # Building clusters pending items first: never beside the cluster task.
            with take_slot("cluster", 1, owner, wait=settings.worker_lease_seconds * 10):
                brief_id, _ = build_daily_brief(settings, runtime.sessions(), topic, date.fromisoformat(day),
                                                encoder=runtime.encoder())
    send_brief.apply_async(args=(brief_id,))
    return brief_id


@app.task(name="briefcast.send_brief", base=StageTask)
def send_brief(brief_id: int) -> list[str]:
    """One delivery task per subscriber due now and not yet served, and one Slack post."""
    return _send_due(brief_id)


def _send_due(brief_id: int) -> list[str]:
    from digest.delivery import FAILED, SENT, deliveries_for
    from digest.schedule import subscriber_due
    from digest.slack import slack_posting_enabled
    from digest.topics import load_topic
    from store.models import Brief, Subscriber

    settings, sessions = runtime.settings, runtime.sessions()
    with sessions() as session:
        brief = session.get(Brief, brief_id)
        if brief is None:
            return []
        topic, day = brief.topic, brief.day
        subscribers = [(s.id, s.email, s.timezone, s.send_time) for s in session.query(Subscriber)
                       .filter(Subscriber.active) if topic in (s.topics or [])]
    send_at = load_topic(settings, topic).send_at
    done = {(d.channel, d.target.strip().lower()) for d in deliveries_for(sessions, topic=topic, day=day)
            if d.status in (SENT, FAILED)}
    ttl, queued = settings.worker_brief_retry_seconds, []
    for sid, email, zone, own_time in subscribers:
        at = _own_send_time(own_time) or send_at  # the subscriber's own (subscription page), else the topic's
        if ("email", email.strip().lower()) in done or not subscriber_due(day, at, _zone(zone)):
            continue
        if enqueue_once(deliver_email, f"email:{brief_id}:{sid}", ttl, brief_id, sid):
            queued.append(f"email:{sid}")
    if slack_posting_enabled(settings) and ("slack", settings.slack_channel.strip().lower()) not in done:
        if enqueue_once(post_slack, f"slack:{brief_id}", ttl, brief_id):
            queued.append("slack")
    return queued


def _own_send_time(value: str | None):
    from datetime import time

    try:
        return time.fromisoformat(value) if value else None
    except ValueError:
        return None


def _zone(name: str | None):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")  # validated when the subscriber was added; never block a delivery on it


@app.task(name="briefcast.deliver_email", base=StageTask, bind=True)
def deliver_email(self: Task, brief_id: int, subscriber_id: int) -> dict:
    """The brief to one subscriber, exactly once (digest.delivery); SMTP trouble is retried."""
    from digest.mail import send_brief_email

    with _queued_until_done(self, f"email:{brief_id}:{subscriber_id}"):
        outcome = send_brief_email(runtime.settings, runtime.sessions(), subscriber_id=subscriber_id,
                                   brief_id=brief_id, worker_id=_owner(self))
    return {"subscriber_id": subscriber_id, "status": outcome.status if outcome else "gone"}


@app.task(name="briefcast.post_slack", base=StageTask, bind=True)
def post_slack(self: Task, brief_id: int) -> dict:
    """The brief to the configured Slack channel, exactly once; Slack's rate limits are retried."""
    from digest.slack import post_brief

    with _queued_until_done(self, f"slack:{brief_id}"):
        outcome = post_brief(runtime.settings, runtime.sessions(), brief_id, worker_id=_owner(self))
    return {"brief_id": brief_id, "status": outcome.status if outcome else "gone"}


# --- speech recognition ------------------------------------------------------------------------


@app.task(name="briefcast.transcribe", base=StageTask, bind=True)
def transcribe(self: Task, episode_id: int | None = None) -> list[int]:
    """Transcribe one episode, or every episode queued for ASR; returns the ids transcribed.

    One lease per episode, not one for the queue: ASR workers on several machines share the queue,
    each episode is transcribed by one of them, and a redelivered task finds its episodes done."""
    from store import repo

    if episode_id is None:
        with runtime.sessions()() as session:
            ids = repo.queued_episode_ids(session)
    else:
        ids = [episode_id]
    done: list[int] = []
    for item_id in ids:  # the model loads on the first episode this worker gets, not before
        done += _transcribe_one(self, item_id, explicit=episode_id is not None)
    if done:
        enqueue_once(embed, "embed", runtime.settings.worker_embed_every_seconds)
    return done


def _transcribe_one(task: Task, item_id: int, *, explicit: bool) -> list[int]:
    """The episode under its own lease; nothing when another worker holds it, or when it is no
    longer queued once the lease is ours (done meanwhile, or by an earlier delivery of this task)."""
    from ingest.asr.stage import transcribe_pending

    # This run's own owner, not the task id: Redis redelivers a task still running past its
    # visibility timeout under the same id, and that copy must not take over this episode's lease
    # (a copy after a crash waits for the lease to expire, a few seconds, then finds it queued).
    owner = f"{_owner(task)}:{os.getpid()}:{random.getrandbits(48):x}"
    try:
        lease = take_slot(f"asr:{item_id}", 1, owner, wait=0)
    except SlotBusy:
        return []
    with lease:
        if not explicit and not _still_queued(item_id):
            return []
        report = transcribe_pending(runtime.settings, runtime.sessions(), episode_id=item_id,
                                    transcriber=runtime.transcriber())
    return report.transcribed_ids


def _still_queued(item_id: int) -> bool:
    from store.models import Item

    with runtime.sessions()() as session:
        item = session.get(Item, item_id)
        return item is not None and item.transcript_status == "queued"
