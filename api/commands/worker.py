"""`briefcast worker` and `briefcast beat`: the Celery worker and scheduler of worker.py, with the
settings this command line read (the same as `celery -A worker worker|beat`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from store.settings import Settings

ALL_QUEUES = "fetch,embed,summarise,deliver,asr"


def default_concurrency(queues: list[str], settings: Settings) -> int | None:
    """One process for the index writer's queue; the model server's bound for summarising;
    Celery's default (one per core) otherwise."""
    if queues == ["embed"]:
        return 1
    if queues == ["summarise"]:
        return settings.worker_summarise_slots
    return None


def worker_argv(queues: str, concurrency: int | None, loglevel: str, hostname: str | None, pool: str,
                settings: Settings) -> list[str]:
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - set(ALL_QUEUES.split(",")))
    if unknown or not names:
        raise typer.BadParameter(f"unknown queue(s) {', '.join(unknown) or '(none)'}; choose from {ALL_QUEUES}",
                                 param_hint="--queues")
    argv = ["worker", "-Q", ",".join(names), f"--loglevel={loglevel}", f"--pool={pool}", "-E"]
    concurrency = concurrency or default_concurrency(names, settings)
    if concurrency:
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    return argv


def worker(
    ctx: typer.Context,
    queues: str = typer.Option(ALL_QUEUES, "--queues", "-Q", help="comma-separated queues to consume"),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1,
                                           help="processes (default: 1 for embed alone, worker_summarise_slots "
                                                "for summarise alone, else one per core)"),
    loglevel: str = typer.Option("info", "--loglevel", "-l"),
    hostname: str | None = typer.Option(None, "--hostname", "-n", help="node name, e.g. embed@%h"),
    pool: str = typer.Option("prefork", "--pool", help="prefork | solo | threads"),
) -> None:
    """Run a Celery worker on the Redis broker (BRIEFCAST_BROKER_URL) for the given queues."""
    from worker import use_settings

    settings: Settings = ctx.obj.settings
    argv = worker_argv(queues, concurrency, loglevel, hostname, pool, settings)
    use_settings(settings).worker_main(argv)


def beat(
    ctx: typer.Context,
    loglevel: str = typer.Option("info", "--loglevel", "-l"),
) -> None:
    """Run Celery beat: refresh due sources, embed and cluster, each topic's brief at its send time."""
    from worker import use_settings

    settings: Settings = ctx.obj.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data_dir / "celerybeat-schedule"
    use_settings(settings).start(["beat", f"--loglevel={loglevel}", "-s", str(schedule)])
