"""Speech recognition for podcasts that publish audio only.

`get_transcriber(name)` builds a backend (`base`, `tiny.en`, `fake`); `Transcriber.transcribe`
takes a file or a 16 kHz mono array and returns `store.entry.Segment`s with absolute times.
`ingest.asr.stage.transcribe_pending` is the stage the CLI and the Celery task call.
Nothing here imports faster_whisper or PyAV until it is used.
"""

from ingest.asr.base import SAMPLE_RATE, TimedSegment, Transcriber, TranscriberError, Word, get_transcriber, register

__all__ = ["SAMPLE_RATE", "TimedSegment", "Transcriber", "TranscriberError", "Word", "get_transcriber", "register"]
