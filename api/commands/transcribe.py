"""`briefcast transcribe`: speech recognition for queued episodes, or for one audio file."""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.progress import Progress


def transcribe(
    ctx: typer.Context,
    episode: int | None = typer.Option(None, "--episode", help="only this item (queued, or failed before)"),
    file: Path | None = typer.Option(None, "--file", help="an audio file (WAV/MP3/M4A): print its transcript"),
    model: str | None = typer.Option(None, "--model", help="override BRIEFCAST_ASR_MODEL: base | tiny.en"),
) -> None:
    """Transcribe episodes that have audio and no published transcript (needs the `asr` extra)."""
    from ingest.asr.base import TranscriberError

    app = ctx.obj
    settings = app.settings if model is None else app.settings.model_copy(update={"asr_model": model})
    try:
        if file is not None:
            _transcribe_file(app, settings, file)
        else:
            _transcribe_episodes(app, settings, episode)
    except TranscriberError as exc:
        app.err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _transcribe_file(app, settings, file: Path) -> None:
    from ingest.asr.audio import AudioError
    from ingest.asr.stage import make_transcriber

    if not file.is_file():
        app.err.print(f"[red]error:[/] no such file: {file}")
        raise typer.Exit(2)
    with app.err.status(f"loading {settings.asr_model}…"):
        transcriber = make_transcriber(settings)
    with _bar(app) as progress:
        task = progress.add_task(file.name, total=None)
        try:
            segments = transcriber.transcribe(
                file, language=settings.asr_language, chunk_seconds=settings.asr_chunk_minutes * 60,
                overlap_seconds=settings.asr_overlap_seconds,
                progress=lambda done, total: progress.update(task, completed=done, total=total))
        except AudioError as exc:
            app.err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
    for seg in segments:
        typer.echo(f"[{clock(seg.start)} -> {clock(seg.end)}] {seg.text}")
    app.err.print(f"{len(segments)} segments ({transcriber.model_name})")


def _transcribe_episodes(app, settings, episode: int | None) -> None:
    from ingest.asr.stage import transcribe_pending

    with _bar(app) as progress:
        tasks: dict[int, int] = {}

        def advance(item_id: int, stage: str, done: float, total: float | None) -> None:
            if item_id not in tasks:
                tasks[item_id] = progress.add_task(f"item {item_id}", total=None)
            label = {"download": "downloading", "transcribe": "transcribing", "done": "done"}[stage]
            progress.update(tasks[item_id], description=f"item {item_id} {label}", completed=done, total=total)

        report = transcribe_pending(settings, app.sessions(), episode_id=episode, progress=advance)
    for e in report.episodes:
        if e.status == "asr":
            app.out.print(f"{e.item_id}  transcribed  {e.segments} segments, {e.audio_seconds / 60:.1f} min of audio "
                          f"in {e.seconds:.0f} s  {e.title}")
        else:
            colour = "red" if e.status == "failed" else "yellow"
            app.out.print(f"{e.item_id}  [{colour}]{e.status}[/]  {e.error}  {e.title}")
    app.out.print(f"{report.count('asr')} transcribed, {report.count('failed')} failed, "
                  f"{report.count('skipped')} skipped" + (f" ({report.model})" if report.model else ""))
    if report.count("failed"):
        raise typer.Exit(1)


def _bar(app) -> Progress:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed:.0f} s of audio"), TimeRemainingColumn())
    return Progress(*columns, console=app.err, transient=True)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--:--.-"
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{int((seconds - whole) * 10)}"
