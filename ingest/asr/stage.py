"""The transcription stage: queued episodes -> audio on disk -> ASR segments stored like a published
transcript. One failed episode is marked `failed` with its reason and never stops the others.

`transcribe_pending` is what `briefcast transcribe` and the Celery task call; `transcribe_ids`
is the thin form for a task that takes ids and returns ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from ingest.asr.audio import AudioError
from ingest.asr.base import Transcriber, TranscriberError, get_transcriber
from ingest.asr.download import download
from ingest.fetch import Fetcher
from store import repo
from store.models import Item
from store.settings import Settings

log = logging.getLogger(__name__)
MAX_CHUNK_MINUTES = 20.0

# (item id, stage, seconds of audio done, seconds in all or None); stage: download | transcribe | done
EpisodeProgress = Callable[[int, str, float, float | None], None]


@dataclass
class EpisodeOutcome:
    item_id: int
    title: str = ""
    status: str = "failed"  # asr | failed | skipped
    segments: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class TranscribeReport:
    model: str | None = None
    episodes: list[EpisodeOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for e in self.episodes if e.status == status)

    @property
    def transcribed_ids(self) -> list[int]:
        return [e.item_id for e in self.episodes if e.status == "asr"]


@dataclass(frozen=True)
class _Episode:
    id: int
    title: str
    audio_url: str | None
    language: str | None
    status: str | None


def make_transcriber(settings: Settings) -> Transcriber:
    return get_transcriber(settings.asr_model, threads=settings.asr_threads, beam=settings.asr_beam)


def transcribe_pending(settings: Settings, sessions: sessionmaker[Session], episode_id: int | None = None,
                       progress: EpisodeProgress | None = None, transcriber: Transcriber | None = None
                       ) -> TranscribeReport:
    """Transcribe every queued episode, or the one given (queued or failed before).

    The model loads only when there is something to transcribe. Raises TranscriberError when it
    cannot be built (extra not installed, damaged model files): the episodes stay queued.
    """
    _check_chunking(settings)
    with sessions() as session:
        ids = [episode_id] if episode_id is not None else repo.queued_episode_ids(session)
    explicit = episode_id is not None
    report = TranscribeReport()
    episodes = [_load(sessions, i) for i in ids]
    reasons = [_skip_reason(e, explicit) for e in episodes]
    if all(reasons):
        report.episodes = [_skipped(i, e, r) for i, e, r in zip(ids, episodes, reasons)]
        return report
    transcriber = transcriber or make_transcriber(settings)
    report.model = transcriber.model_name
    for item_id, episode, reason in zip(ids, episodes, reasons):
        if reason:
            report.episodes.append(_skipped(item_id, episode, reason))
        else:
            report.episodes.append(transcribe_episode(settings, sessions, transcriber, episode, progress))
    return report


def transcribe_ids(settings: Settings, sessions: sessionmaker[Session], ids: list[int]) -> list[int]:
    """For a Celery task: the given episodes in, the ids it transcribed out."""
    transcriber = make_transcriber(settings) if ids else None  # one model load for the batch
    done: list[int] = []
    for item_id in ids:
        report = transcribe_pending(settings, sessions, episode_id=item_id, transcriber=transcriber)
        done += report.transcribed_ids
    return done


def _check_chunking(settings: Settings) -> None:
    if not 0 < settings.asr_chunk_minutes <= MAX_CHUNK_MINUTES:
        raise TranscriberError(f"asr_chunk_minutes must be in (0, {MAX_CHUNK_MINUTES:g}], "
                               f"got {settings.asr_chunk_minutes:g}: memory grows with the chunk")
    if not 0 <= settings.asr_overlap_seconds * 2 < settings.asr_chunk_minutes * 60:
        raise TranscriberError("asr_overlap_seconds must be under half a chunk")


def _load(sessions: sessionmaker[Session], item_id: int) -> _Episode | None:
    with sessions() as session:
        item = session.get(Item, item_id)
        if item is None:
            return None
        return _Episode(item.id, item.title, item.audio_url, item.language, item.transcript_status)


def _skip_reason(episode: _Episode | None, explicit: bool) -> str | None:
    """Why the episode is not to be transcribed; None when it is."""
    if episode is None:
        return "no such item"
    if not episode.audio_url:
        return "no audio enclosure"
    if episode.status == "published":
        return "has a published transcript"
    if episode.status == "asr":
        return "already transcribed"
    if episode.status == "queued" or (explicit and episode.status in ("failed", None)):
        return None
    return f"transcript status is {episode.status!r}"


def _skipped(item_id: int, episode: _Episode | None, reason: str) -> EpisodeOutcome:
    return EpisodeOutcome(item_id, episode.title if episode else "", status="skipped", error=reason)


def transcribe_episode(settings: Settings, sessions: sessionmaker[Session], transcriber: Transcriber,
                       episode: _Episode, progress: EpisodeProgress | None = None) -> EpisodeOutcome:
    started = time.perf_counter()
    outcome = EpisodeOutcome(episode.id, episode.title)
    audio: Path | None = None
    try:
        if progress:
            progress(episode.id, "download", 0.0, None)
        audio = _fetch_audio(settings, episode)
        segments = transcriber.transcribe(
            audio, language=settings.asr_language or _primary(episode.language),
            chunk_seconds=settings.asr_chunk_minutes * 60, overlap_seconds=settings.asr_overlap_seconds,
            progress=(lambda done, total: progress(episode.id, "transcribe", done, total)) if progress else None,
        )
        if not segments:
            raise AudioError("no speech recognised in the audio")
        _store(sessions, episode.id, lambda s, item: repo.store_asr_transcript(s, item, segments, transcriber.model_name))
        outcome.status, outcome.segments = "asr", len(segments)
        outcome.audio_seconds = max((s.end or 0.0) for s in segments)
        if audio is not None and not settings.asr_keep_audio:
            audio.unlink(missing_ok=True)
    except AudioError as exc:
        outcome.error = str(exc)
        if audio is not None:
            audio.unlink(missing_ok=True)  # undecodable: a retry fetches it again
    except (_DownloadFailed, TranscriberError) as exc:
        outcome.error = str(exc)
    except Exception as exc:  # a bug or a library surprise: this episode fails, the others go on
        log.exception("transcribing item %s failed", episode.id)
        outcome.error = f"internal error: {type(exc).__name__}: {exc}"
    if outcome.error:
        _store(sessions, episode.id, lambda s, item: repo.mark_transcription_failed(s, item, outcome.error))
    outcome.seconds = time.perf_counter() - started
    if progress:
        progress(episode.id, "done", outcome.audio_seconds, outcome.audio_seconds)
    return outcome


class _DownloadFailed(Exception):
    pass


def _fetch_audio(settings: Settings, episode: _Episode) -> Path:
    dest = settings.data_dir / "audio" / f"item-{episode.id}.audio"
    if dest.exists():
        return dest  # kept from an earlier run (asr_keep_audio, or a failure after the download)
    # The feed limits (20 MB, 60 s) are for pages; an episode is hundreds of MB over minutes.
    fetch_settings = settings.model_copy(update={"total_timeout": settings.asr_download_timeout})

    async def go():
        async with Fetcher(fetch_settings) as fetcher:
            return await download(fetcher, episode.audio_url, dest, max_bytes=settings.asr_max_audio_bytes)

    got = asyncio.run(go())
    if got.path is None:
        raise _DownloadFailed(f"downloading {episode.audio_url} failed: {got.error}")
    return got.path


def _store(sessions: sessionmaker[Session], item_id: int, write: Callable[[Session, Item], None]) -> None:
    with sessions() as session, session.begin():
        item = session.get(Item, item_id)
        if item is not None:  # deleted while we listened: nothing to store
            write(session, item)


def _primary(language: str | None) -> str | None:
    return language.split("-")[0].split("_")[0].lower() if language else None
