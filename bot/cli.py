"""`qinglian …`: the operator's and administrator's command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer

from bot.channels.wechat import wechat_app
from bot.config import ConfigError, Settings, load_settings
from console.cli import staff_app
from nlp.cli import classify, model_app

app = typer.Typer(help="Qinglian (清廉): public-reporting chatbot.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(staff_app, name="staff")
app.add_typer(wechat_app, name="wechat")
app.command()(classify)
app.add_typer(model_app)


def _settings() -> Settings:
    try:
        settings = load_settings()
        settings.resolved_secret_key()
    except ConfigError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None
    return settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run everything in one process: web chat, webhooks, the Telegram bot and the workers."""
    import uvicorn

    from bot.app import create_app

    settings = _settings()
    _configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _migrate(settings)
    telegram = "off (set QINGLIAN_TELEGRAM_TOKEN)"
    if settings.telegram_token:
        telegram = "webhook" if settings.telegram_webhook_url else "long polling"
    typer.echo(f"Qinglian: web chat on http://{host}:{port}/ · database {_safe_url(settings)} · Telegram {telegram}")
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    asyncio.run(server.serve())
    if not server.started:
        sys.exit(1)


def _migrate(settings: Settings, revision: str = "head") -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from storage.migrate import upgrade

    try:
        upgrade(settings.resolved_database_url, revision)
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        typer.echo(f"qinglian: cannot open the database at {_safe_url(settings)}: {reason}", err=True)
        raise typer.Exit(2) from None


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


@app.command()
def worker() -> None:
    """Run only the background work (outbox delivery, housekeeping, digests), without HTTP."""
    from bot.worker import run_worker

    settings = _settings()
    _configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _migrate(settings)
    asyncio.run(run_worker(settings))


@app.command()
def check() -> None:
    """Validate the configuration and its connections (database, Telegram, WeChat) before going live."""
    from rich.console import Console

    from bot.check import run_checks

    findings = asyncio.run(run_checks(_settings()))
    console = Console()
    for finding in findings:
        mark = "[green]✓[/green]" if finding.ok else "[red]✗[/red]"
        console.print(f"{mark} {finding.name}: {finding.detail}", highlight=False)
    if not all(finding.ok for finding in findings):
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Create or migrate the database schema."""
    settings = _settings()
    _migrate(settings, revision)
    typer.echo(f"database at {_safe_url(settings)} is at revision {revision}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database."""
    from storage.migrate import current

    current(_settings().resolved_database_url)


@db_app.command("backup")
def db_backup(file: Annotated[str, typer.Argument(help="The archive to write (.tar.gz or .qlbak).")]) -> None:
    """Write a consistent backup: every table (one snapshot, safe while the service runs), the evidence
    files and the classifier models, with a manifest of checksums.

    The backup is database-agnostic: one taken from SQLite restores into PostgreSQL and back, which is
    how to move from the embedded default to production. The secret key is not included: keep
    QINGLIAN_SECRET_KEY (or <data_dir>/secret.key) to keep receipt codes valid after a restore.
    """
    from pathlib import Path

    from storage.backup import BackupError, create_backup

    settings = _settings()
    try:
        summary = create_backup(settings.resolved_database_url, settings.data_dir, Path(file))
    except BackupError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None
    rows = sum(summary.row_counts.values())
    typer.echo(f"backup of {_safe_url(settings)} (schema {summary.revision}) written to {summary.path}: "
               f"{rows} rows in {len(summary.row_counts)} tables, {summary.file_count} files")


@db_app.command("restore")
def db_restore(
    file: Annotated[str, typer.Argument(help="A backup written by `qinglian db backup`.")],
    force: Annotated[bool, typer.Option("--force", help="Replace the data of a database that is not empty.")] = False,
) -> None:
    """Restore a backup into the configured database and data directory.

    Checks the manifest and every checksum first, creates or migrates the schema to the backup's
    revision, inserts every row in one transaction, restores evidence and model files, then migrates
    to the newest schema. The source may be SQLite or PostgreSQL, whatever the target is. Refuses a
    target that already has data unless --force (which empties it first).
    """
    from pathlib import Path

    from storage.backup import BackupError, restore_backup

    settings = _settings()
    try:
        summary = restore_backup(settings.resolved_database_url, settings.data_dir, Path(file), force=force)
    except BackupError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"restored {file} into {_safe_url(settings)} (schema {summary.revision}):")
    for table_name, count in summary.row_counts.items():
        typer.echo(f"  {table_name}: {count} rows")
    typer.echo(f"  files: {summary.file_count}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
