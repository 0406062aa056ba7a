"""The `briefcast` command run in this process through typer's runner, with the same environment
tests/test_cli.py gives its subprocess (a data directory of the test's own, no config file, a wide
terminal). A subprocess costs ~1 s a call on a busy 2-core machine; this costs milliseconds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def briefcast(tmp_path: Path, *args: str, **env: str) -> Ran:
    from api.cli import app

    environment = {"BRIEFCAST_DATA_DIR": str(tmp_path / "data"), "BRIEFCAST_CONFIG": str(tmp_path / "none.toml"),
                   "COLUMNS": "200"} | env
    result = CliRunner().invoke(app, list(args), env=environment, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)
