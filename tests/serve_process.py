"""`briefcast serve` in a process of its own, on a free loopback port, as a user starts it: the tests
that need the real server (uvicorn, its workers, its limits) start it through here."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_env(settings, config_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any BRIEFCAST_ setting, plus the world's data dir and
    database, a config file that does not exist (so no user file leaks in) and `extra`
    (BRIEFCAST_ENCODER="fake", Slack secrets, ...)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}
    return clean | {"BRIEFCAST_DATA_DIR": str(settings.data_dir), "BRIEFCAST_DATABASE_URL": settings.db_url,
                    "BRIEFCAST_CONFIG": str(config_dir / "none.toml")} | extra


@contextmanager
def briefcast_serve(env: dict[str, str], log: Path, *, workers: int = 1, start_seconds: float = 60.0) -> Iterator[tuple[str, int]]:
    """Yields (base URL, port) once /health answers; the server's output goes to `log`, whose tail
    is the failure message if it exits or never answers."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "briefcast"), "serve", "--port", str(port)]
    if workers != 1:
        command += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for_health(base, process, log, start_seconds)
            yield base, port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_health(base: str, process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"briefcast serve exited: {log.read_text()[-2000:]}"
        try:
            httpx.get(base + "/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"briefcast serve did not answer in {seconds:.0f} s: {log.read_text()[-2000:]}")


class UvicornApp:
    """`briefcast serve`'s app (api.app:app_from_environment) under uvicorn with h11, on a free
    loopback port, in its own process; `env` is the whole environment it gets, plus its own
    BRIEFCAST_PUBLIC_BASE_URL. The log is `log_dir/uvicorn-<port>.log`."""

    def __init__(self, env: dict[str, str], log_dir: Path, start_seconds: float = 60.0) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"uvicorn-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "api.app:app_from_environment", "--factory", "--host", "127.0.0.1",
                 "--port", str(self.port), "--http", "h11"],
                cwd=ROOT, env=env | {"BRIEFCAST_PUBLIC_BASE_URL": self.base_url}, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_for_health(self.base_url, self.proc, self.log, start_seconds)
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
