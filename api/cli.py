"""The `briefcast` command. Settings are built here, once, and handed to every stage.

Every command module imports what its command needs inside the command (CONVENTIONS #10): the
command line starts without ingest, digest, torch or the database layer, and `briefcast search`
loads only search's own modules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from store.settings import Settings

app = typer.Typer(help="briefcast: news and podcast insights from models on your own machine.", no_args_is_help=True)


@dataclass
class AppContext:
    settings: Settings
    out: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))
    _sessions: sessionmaker[Session] | None = None

    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            from store.db import SchemaError, open_database

            try:
                self._sessions = open_database(self.settings.db_url, self.settings.auto_migrate)
            except SchemaError as error:  # a schema this code cannot use: say so, no traceback
                self.err.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
                raise typer.Exit(2) from error
        return self._sessions


@app.callback()
def _root(ctx: typer.Context, verbose: bool = typer.Option(False, "--verbose", "-v", help="log details")) -> None:
    from store.settings import Settings

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = AppContext(settings=Settings())


def _register() -> None:
    from api.commands import embed, fetch, items, run, samples, search, serve, sources

    app.add_typer(sources.app, name="sources")
    app.add_typer(items.app, name="items")
    app.add_typer(samples.app, name="samples")
    app.add_typer(serve.apikey_app, name="apikey")
    app.command("fetch")(fetch.fetch)
    app.command("embed")(embed.embed)
    app.command("reindex")(embed.reindex)
    app.command("search")(search.search)
    app.command("serve")(serve.serve)
    app.command("run")(run.run)
    from api.commands.worker import beat, worker
    app.command("worker")(worker)
    app.command("beat")(beat)
    from api.commands.transcribe import transcribe
    app.command("transcribe")(transcribe)
    from api.commands import digest, subscribers
    app.add_typer(subscribers.app, name="subscribers")
    app.command("digest")(digest.digest)
    from api.commands.explain import explain
    app.command("explain")(explain)
    from api.commands import stories
    from api.commands.status import status
    app.command("status")(status)
    app.add_typer(stories.app, name="stories")
    from api.commands import db
    app.add_typer(db.app, name="db")
    from api.slack import cli as slack_cli
    app.add_typer(slack_cli.app, name="slack")


_register()


def main() -> None:
    app()
