"""`briefcast embed` and `briefcast reindex`."""

from __future__ import annotations

from contextlib import contextmanager

import typer


def run_embed(ctx: typer.Context, rebuild: bool):
    """Embed pending passages; returns the encoder so a caller can search without loading it again."""
    from embed.pipeline import embed_pending
    from embed.runtime import index_store, make_encoder, make_multilingual_embedding, uses_database_index

    app = ctx.obj
    settings = app.settings
    if uses_database_index(settings):
        return _embed_into_database(app, rebuild)
    store = index_store(settings)
    with app.err.status("loading the encoder…"):
        encoder = make_encoder(settings)
    meta = store.meta()
    if meta is not None and meta.model_id != encoder.model_id:
        app.err.print(f"[yellow]The index was built with {meta.model_id}; encoder is now {encoder.model_id}: "
                      "rebuilding every vector.[/]")
    elif meta is not None and meta.keywords is not None and not meta.keywords_current:
        app.err.print("[yellow]The keyword index was written before Chinese, Japanese and Korean words were "
                      "indexed: rebuilding it beside the live one (search answers from the old one meanwhile; "
                      "no vector is re-embedded).[/]")
    announce_story_model(app, settings)
    multilingual = make_multilingual_embedding(settings)
    announce_multilingual_model(app, multilingual)
    with _progress(app) as advance:
        report = embed_pending(app.sessions(), encoder, store, batch=settings.embed_batch, rebuild=rebuild,
                               index_kind=settings.index_kind, nprobe=settings.nprobe, progress=advance,
                               multilingual=multilingual)
    rate = report.passages_embedded / report.seconds if report.seconds else 0.0
    app.out.print(f"{report.items_split} items split: {report.passages_added} passages new, "
                  f"{report.passages_removed} removed; {report.passages_embedded} embedded ({rate:.1f}/s); "
                  f"index: {report.index_count} vectors ({report.index_kind}, {encoder.model_id})"
                  + (" \\[rebuilt]" if report.rebuilt else ""))
    _print_multilingual(app, report, multilingual)
    return encoder


def _print_multilingual(app, report, multilingual) -> None:
    if report.multilingual is not None and (report.multilingual.embedded or report.multilingual.removed):
        ml = report.multilingual
        app.out.print(f"across languages: {ml.embedded} embedded, {ml.removed} removed; "
                      f"{ml.counts.get('other', 0)} passages in other languages, {ml.counts.get('leads', 0)} leads "
                      f"({multilingual.encoder.model_id})" + (" \\[rebuilt]" if ml.rebuilt else ""))


def _embed_into_database(app, rebuild: bool):
    """index_source=database: vectors go to the database only; each process's mirror syncs them."""
    from embed.db_embed import embed_into_database
    from embed.runtime import make_encoder, make_multilingual_embedding

    settings = app.settings
    with app.err.status("loading the encoder…"):
        encoder = make_encoder(settings)
    announce_story_model(app, settings)
    multilingual = make_multilingual_embedding(settings)
    with _progress(app) as advance:
        report = embed_into_database(app.sessions(), encoder, batch=settings.embed_batch, rebuild=rebuild,
                                     progress=advance, multilingual=multilingual)
    rate = report.passages_embedded / report.seconds if report.seconds else 0.0
    app.out.print(f"{report.items_split} items split: {report.passages_added} passages new, "
                  f"{report.passages_removed} removed; {report.passages_embedded} embedded ({rate:.1f}/s); "
                  f"database: {report.index_count} vectors ({encoder.model_id})" + (" \\[rebuilt]" if report.rebuilt else ""))
    _print_multilingual(app, report, multilingual)
    return encoder


@contextmanager
def _progress(app):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]embedding"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:.1f} passages/s"), TimeRemainingColumn())
    with Progress(*columns, console=app.err, transient=True) as progress:
        task = progress.add_task("", total=None, rate=0.0)

        def advance(done: int, total: int) -> None:
            elapsed = progress.tasks[0].elapsed or 1e-9
            progress.update(task, completed=done, total=total, rate=done / elapsed)

        yield advance


def announce_story_model(app, settings) -> None:
    """A changed story encoder re-embeds nothing stored: story vectors are made while clustering."""
    from embed.runtime import story_model_change

    change = story_model_change(settings)
    if change is not None:
        app.err.print(f"[yellow]Stories were linked with {change[0]}; the story encoder is now {change[1]}: "
                      "the next clustering embeds the open stories' items with it (passages and the index "
                      "are not re-embedded; stories already formed stay).[/]")


def announce_multilingual_model(app, multilingual) -> None:
    """A changed multilingual encoder re-embeds only the second index, beside the live one."""
    change = multilingual.model_change() if multilingual is not None else None
    if change is not None:
        app.err.print(f"[yellow]Passages across languages were embedded with {change[0]}; the multilingual "
                      f"encoder is now {change[1]}: re-embedding only those (other-language passages and "
                      "leads) beside the live ones; passage vectors and the keyword index stay.[/]")


def embed(ctx: typer.Context) -> None:
    """Split new or changed items into passages and add their vectors to the index."""
    run_embed(ctx, rebuild=False)


def reindex(ctx: typer.Context) -> None:
    """Re-embed every passage with the configured encoder and rebuild the index."""
    run_embed(ctx, rebuild=True)
