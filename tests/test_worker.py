"""worker.py in-process: configuration, leases and slots on a real (private) Redis, the tasks over
SQLite and a loopback feed, the beat schedule's clock, and the import path without heavy modules."""

from __future__ import annotations

import ast
import time as time_module
import subprocess
import sys
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import typer

import worker
from api.commands.worker import worker_argv
from digest.schedule import SendTime, beat_schedule, due_briefs, subscriber_due
from ingest.localserver import LocalServer
from store import repo
from store.db import open_database
from store.models import Item
from tests.conftest import ROOT, make_settings
from tests.workers import RedisServer, write_site


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path, sqlite_url, redis_server):
    redis_server.client().flushall()
    configured = make_settings(tmp_path, sqlite_url, broker_url=redis_server.url, encoder="fake",
                               fetch_full_text=False, respect_robots=False, worker_lease_seconds=2,
                               task_max_retries=2)
    worker.use_settings(configured)
    yield configured
    worker.runtime.use(make_settings(tmp_path, sqlite_url, broker_url=redis_server.url))


def test_importing_worker_loads_no_model_library():
    code = ("import sys, worker; heavy = [m for m in ('torch', 'faiss', 'llama_cpp', 'faster_whisper', "
            "'sentence_transformers', 'onnxruntime', 'spacy') if m in sys.modules]; print(heavy); assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


DELIVER_TASKS = ("send_brief", "_send_due", "deliver_email", "post_slack")
OUR_PACKAGES = ("api", "digest", "embed", "ingest", "store")


def lazy_imports(path, functions: tuple[str, ...] | None = None) -> set[str]:
    """Modules imported inside the functions of a source file (all of them, or those named)."""
    found: set[str] = set()
    for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and (functions is None or fn.name in functions):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module)
                elif isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
    return found


def test_delivering_a_brief_imports_nothing_from_the_api():
    """The deliver tasks (email and Slack) run on workers that need no web app: neither `worker`
    nor what its deliver tasks import when they run (and what those modules import lazily in
    turn, such as slack_sdk) may load a module of api/."""
    tasks = lazy_imports(ROOT / "worker.py", DELIVER_TASKS)
    assert {"digest.slack", "digest.mail"} <= tasks, tasks
    modules = set(tasks)
    for name in tasks:
        path = ROOT / (name.replace(".", "/") + ".py")
        if name.split(".")[0] in OUR_PACKAGES and path.exists():
            modules |= lazy_imports(path)
    assert not any(m == "api" or m.startswith("api.") for m in modules), sorted(modules)
    code = ("import importlib, sys, worker\n"
            f"for name in {sorted(modules)!r}:\n"
            "    importlib.import_module(name)\n"
            "loaded = sorted(m for m in sys.modules if m == 'api' or m.startswith('api.'))\n"
            "assert not loaded, loaded\n"
            "assert 'digest.slack' in sys.modules and 'slack_sdk' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_config_is_json_only_late_acks_and_one_task_at_a_time(settings):
    conf = worker.celery_config(settings.model_copy(update={"visibility_timeout": 1234}))
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"]["visibility_timeout"] == 1234
    assert conf["result_backend"] == settings.broker_url
    assert {q.name for q in conf["task_queues"]} == {"fetch", "embed", "summarise", "deliver", "asr"}
    assert conf["task_routes"]["briefcast.embed"] == {"queue": "embed"}
    assert worker.app.conf.broker_url == settings.broker_url  # handed in after the app was configured


def test_a_task_lands_in_its_own_queue_only(settings, redis_server):
    with worker.app.connection_for_write() as conn:
        for queue in worker.queues():  # as workers of every queue would on start-up
            queue(conn.default_channel).declare()
    worker.embed.apply_async()
    worker.fetch_source.apply_async(args=[1])
    lengths = {name: redis_server.client().llen(name) for name in worker.QUEUES}
    assert lengths == {"fetch": 1, "embed": 1, "summarise": 0, "deliver": 0, "asr": 0}


def test_only_named_transient_errors_are_retried():
    retried = worker.StageTask.autoretry_for
    assert sa.exc.OperationalError in retried and worker.SlotBusy in retried
    assert not any(issubclass(ValueError, e) or e in (Exception, BaseException) for e in retried)


def test_a_transient_error_is_retried_then_raised(settings, tmp_path):
    # A database that refuses connections: OperationalError, retried task_max_retries times.
    from celery import signals

    worker.use_settings(settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}))
    retries = []
    handler = lambda **kw: retries.append(kw["reason"])  # noqa: E731
    signals.task_retry.connect(handler, weak=False)
    try:
        result = worker.fetch_source.apply(args=[1])
    finally:
        signals.task_retry.disconnect(handler)
    assert result.state == "FAILURE" and isinstance(result.result, sa.exc.OperationalError)
    assert len(retries) == settings.task_max_retries and all(isinstance(r.exc, sa.exc.OperationalError) for r in retries)


def test_a_bug_is_not_retried(settings):
    from celery import signals

    retries = []
    handler = lambda **kw: retries.append(kw["reason"])  # noqa: E731
    signals.task_retry.connect(handler, weak=False)
    try:
        result = worker.fetch_source.apply(args=[1, False, "one argument too many"])  # a TypeError
    finally:
        signals.task_retry.disconnect(handler)
    assert result.state == "FAILURE" and retries == []


def test_lease_is_exclusive_and_taken_back_by_its_own_task(settings, redis_server):
    client = redis_server.client()
    mine = worker.Lease(client, "test:lease", "task-1", ttl=30)
    theirs = worker.Lease(client, "test:lease", "task-2", ttl=30)
    assert mine.acquire()
    assert not theirs.acquire()
    assert worker.Lease(client, "test:lease", "task-1", ttl=30).acquire()  # redelivered: same task id
    theirs.release()  # not theirs to release
    assert client.get("briefcast:test:lease") == b"task-1"
    mine.release()
    assert theirs.acquire()


def test_a_dead_holders_lease_expires_and_a_live_one_is_kept(settings, redis_server):
    import time as clock

    client = redis_server.client()
    dead = worker.Lease(client, "test:dead", "gone", ttl=1)
    assert dead.acquire()
    with worker.Lease(client, "test:alive", "running", ttl=1) as alive:
        assert alive.acquire()
        clock.sleep(2.5)  # past the TTL: kept alive by its thread
        assert client.get("briefcast:test:alive") == b"running"
    assert client.get("briefcast:test:dead") is None
    assert client.get("briefcast:test:alive") is None  # released on exit


def test_slots_bound_how_many_hold_at_once(settings):
    first = worker.take_slot("host:example.org", 2, "a", wait=0)
    second = worker.take_slot("host:example.org", 2, "b", wait=0)
    with pytest.raises(worker.SlotBusy):
        worker.take_slot("host:example.org", 2, "c", wait=0.5)
    first.release()
    assert worker.take_slot("host:example.org", 2, "c", wait=0).key != second.key


@pytest.fixture
def feeds(tmp_path):
    with LocalServer(tmp_path / "site", render=False) as server:
        paths = write_site(tmp_path / "site", 3, 4, server.base_url)
        yield [server.url(p) for p in paths]


def test_fetch_tasks_store_each_source_once_and_ask_for_one_embed(settings, feeds, redis_server):
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        ids = [repo.add_source(session, url)[0].id for url in feeds]
    queue = redis_server.client()
    assert sorted(worker.refresh_due.apply().get()) == ids
    assert worker.refresh_due.apply().get() == []  # already waiting in the queue: not sent twice
    assert queue.llen("fetch") == len(ids)
    outcomes = [worker.fetch_source.apply(args=[sid]).get() for sid in ids]
    assert [o["new_items"] for o in outcomes] == [4, 4, 4]
    assert queue.llen("embed") == 1  # three sources with news, one embed task waiting
    assert worker.fetch_source.apply(args=[ids[0]]).get()["status"] == "not_due"
    assert worker.fetch_source.apply(args=[999]).get() == {"source_id": 999, "status": "gone"}
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Item)) == 12


def test_embed_task_indexes_and_skips_while_another_run_holds_the_lease(settings, feeds):
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        sid = repo.add_source(session, feeds[0])[0].id
    worker.fetch_source.apply(args=[sid]).get()
    held = worker.take_slot("embed", 1, "someone-else", wait=0)
    assert worker.embed.apply().get() == {"status": "busy"}
    held.release()
    done = worker.embed.apply().get()
    assert done["status"] == "done" and done["passages_embedded"] == done["index_count"] == 4


def test_transcribe_task_with_nothing_queued_loads_no_model(settings):
    open_database(settings.db_url)
    worker.use_settings(settings.model_copy(update={"asr_model": "no-such-model"}))  # would raise if built
    assert worker.transcribe.apply().get() == []


def test_due_briefs_follow_each_topics_local_clock():
    times = [SendTime("tokyo", ZoneInfo("Asia/Tokyo"), time(7, 0)), SendTime("ny", ZoneInfo("America/New_York"), time(7, 0))]
    # 23:30 UTC on 1 Dec = 08:30 on 2 Dec in Tokyo, 18:30 on 1 Dec in New York.
    assert due_briefs(times, datetime(2026, 12, 1, 23, 30, tzinfo=UTC)) == [("tokyo", "2026-12-02"), ("ny", "2026-12-01")]
    # 11:00 UTC = 20:00 in Tokyo (still 1 Dec there), 06:00 in New York: not yet.
    assert due_briefs(times, datetime(2026, 12, 1, 11, 0, tzinfo=UTC)) == [("tokyo", "2026-12-01")]


def test_each_subscriber_gets_the_brief_at_the_send_time_in_their_own_zone():
    at = time(7, 0)
    built = datetime(2026, 12, 2, 7, 1, tzinfo=UTC)  # a UTC topic's brief of 2 Dec, just built
    assert subscriber_due("2026-12-02", at, ZoneInfo("Asia/Tokyo"), built)  # 16:01 there: at once
    assert not subscriber_due("2026-12-02", at, ZoneInfo("America/New_York"), built)  # 02:01 there
    assert subscriber_due("2026-12-02", at, ZoneInfo("America/New_York"), datetime(2026, 12, 2, 12, 0, tzinfo=UTC))


def test_beat_schedule_comes_from_settings(settings):
    schedule = beat_schedule(settings.model_copy(update={"worker_refresh_check_seconds": 120}))
    assert schedule["refresh-due-sources"]["schedule"] == 120.0
    assert {e["task"] for e in schedule.values()} <= set(worker.app.tasks)


def test_worker_command_line(settings):
    assert worker_argv("embed", None, "info", None, "prefork", settings)[:3] == ["worker", "-Q", "embed"]
    assert "-c" in worker_argv("embed", None, "info", None, "prefork", settings)
    argv = worker_argv("fetch,deliver", 4, "info", "fetch@%h", "prefork", settings)
    assert argv[argv.index("-c") + 1] == "4" and argv[argv.index("-n") + 1] == "fetch@%h"
    with pytest.raises(typer.BadParameter, match="unknown queue"):
        worker_argv("fetch,bogus", None, "info", None, "prefork", settings)


def test_send_brief_fans_out_to_due_subscribers_of_the_topic_once(settings, redis_server):
    from pydantic import SecretStr

    from digest.subscribers import add_subscriber
    from tests.email_helpers import sample_brief, store_brief

    sessions = open_database(settings.db_url)
    reader = add_subscriber(sessions, "reader@example.org", topics=["ai-geopolitics"], timezone="Asia/Tokyo")[0]
    add_subscriber(sessions, "other@example.org", topics=["something-else"])
    past = store_brief(sessions, sample_brief("2026-11-20"))
    future = store_brief(sessions, sample_brief("2999-01-01"))
    queue = redis_server.client()
    assert worker.send_brief.apply(args=[past]).get() == [f"email:{reader.id}"]
    assert worker.send_brief.apply(args=[past]).get() == []  # already waiting in the deliver queue
    assert worker.send_brief.apply(args=[future]).get() == []  # 07:00 of that day has not come anywhere
    assert queue.llen("deliver") == 1
    worker.use_settings(settings.model_copy(update={"slack_bot_token": SecretStr("xoxb-test"), "slack_channel": "C0123"}))
    assert worker.send_brief.apply(args=[past]).get() == ["slack"]
    assert worker.send_brief.apply(args=[12345]).get() == []  # a brief that is gone


def test_a_subscribers_own_send_time_replaces_the_topics(settings, redis_server):
    """Set on the subscription page: 00:00 is always past today, 23:59 is not (the topic says 07:00)."""
    from digest.subscribers import add_subscriber
    from store.models import Subscriber
    from tests.email_helpers import sample_brief, store_brief

    sessions = open_database(settings.db_url)
    ids = {}
    for name, own in (("early", "00:00"), ("late", "23:59"), ("topic", None)):
        ids[name] = add_subscriber(sessions, f"{name}@example.org", topics=["ai-geopolitics"], timezone="UTC")[0].id
        with sessions() as session, session.begin():
            session.get(Subscriber, ids[name]).send_time = own
    now = datetime.now(UTC)
    queued = set(worker.send_brief.apply(args=[store_brief(sessions, sample_brief(now.date().isoformat()))]).get())
    assert f"email:{ids['early']}" in queued
    if now.time() < time(23, 59):
        assert f"email:{ids['late']}" not in queued
    assert (f"email:{ids['topic']}" in queued) == (now.time() >= time(7, 0))


def test_asr_workers_share_the_queue_one_lease_per_episode(settings, monkeypatch, tmp_path):
    """Two machines' ASR workers: an episode another worker holds is left to it (before, one lease
    covered the whole queue, so a second worker either idled or, holding its own, transcribed the
    same episode again); a redelivered task finds its episode done and transcribes nothing."""
    import shutil

    from ingest.asr.fake import FakeTranscriber
    from tests.asr_audio import ASR_DATA
    from tests.test_asr_stage import by_guid, fetch_feed, podcast

    root = tmp_path / "site"
    (root / "audio").mkdir(parents=True)
    (root / "t").mkdir()
    shutil.copy(ASR_DATA / "short.mp3", root / "audio" / "a.mp3")
    shutil.copy(ASR_DATA / "short.mp3", root / "audio" / "missing.mp3")  # both audio-only episodes play
    (root / "t" / "b.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\nWords.\n")
    (root / "feed.xml").write_text(podcast())
    transcriber = FakeTranscriber()
    monkeypatch.setattr(worker.runtime, "transcriber", lambda: transcriber)
    sessions = worker.runtime.sessions()
    with LocalServer(root) as server:
        fetch_feed(settings, sessions, server)
        ids = {g: i.id for g, i in by_guid(sessions).items()}
        assert {g: i.transcript_status for g, i in by_guid(sessions).items()} == {
            "a": "queued", "b": "published", "c": "queued"}

        other_machine = worker.take_slot(f"asr:{ids['a']}", 1, "worker-on-machine-2", wait=0)
        assert worker.transcribe.apply().get() == [ids["c"]]  # "a" is the other machine's
        assert by_guid(sessions)["a"].transcript_status == "queued"
        other_machine.release()

        assert worker.transcribe.apply().get() == [ids["a"]]
        assert worker.transcribe.apply().get() == []  # the queue is empty
        assert worker.transcribe.apply(kwargs={"episode_id": ids["a"]}).get() == []  # a redelivery: done already
    assert {g: i.transcript_status for g, i in by_guid(sessions).items()} == {"a": "asr", "b": "published", "c": "asr"}


def test_a_redelivered_copy_of_a_running_asr_task_does_not_take_its_episode(settings, monkeypatch):
    """Redis redelivers a task still running past its visibility timeout under the same task id:
    the episode's lease belongs to the run, not to the id, so the copy finds it busy (before, the
    copy re-took the lease as its own and both transcribed the episode)."""
    import threading
    from types import SimpleNamespace

    import ingest.asr.stage as stage

    started, finish, calls = threading.Event(), threading.Event(), []

    def slow_transcribe(settings, sessions, episode_id=None, transcriber=None):
        calls.append(episode_id)
        started.set()
        finish.wait(10)
        return SimpleNamespace(transcribed_ids=[episode_id])

    monkeypatch.setattr(stage, "transcribe_pending", slow_transcribe)
    monkeypatch.setattr(worker.runtime, "transcriber", lambda: None)
    task = SimpleNamespace(request=SimpleNamespace(id="task-7"))
    first: list = []
    running = threading.Thread(target=lambda: first.extend(worker._transcribe_one(task, 41, explicit=True)))
    running.start()
    assert started.wait(10)
    assert worker._transcribe_one(task, 41, explicit=True) == []  # the copy, same task id: leaves it
    finish.set()
    running.join(10)
    assert first == [41] and calls == [41]


def test_a_lease_that_expired_under_its_holder_says_so(settings, redis_server):
    lease = worker.Lease(redis_server.client(), "slot:asr:lost:0", "me", 1)
    assert lease.acquire()
    with lease:
        redis_server.client().delete(worker.KEY + "slot:asr:lost:0")  # expired while Redis was away
        redis_server.client().set(worker.KEY + "slot:asr:lost:0", "someone-else")
        deadline = time_module.monotonic() + 5
        while not lease.lost and time_module.monotonic() < deadline:
            time_module.sleep(0.05)
    assert lease.lost
    assert redis_server.client().get(worker.KEY + "slot:asr:lost:0") == b"someone-else"  # release left theirs
