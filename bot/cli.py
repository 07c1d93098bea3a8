"""`qinglian …`: the operator's and administrator's command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, NoReturn

import typer

from bot.channels.wechat.cli import wechat_app
from bot.cli_errors import DATABASE_UNAVAILABLE, cannot_open_database, require_schema
from bot.config import ConfigError, Settings, load_settings, writable_data_dir
from bot.logs import configure_logging, uvicorn_log_config
from bot.staff_cli import audit_command, refuse_demo_admin_in_production, staff_app, staff_labelled_reports
from handlers.texts import fill
from nlp.cli import ModelKeys, classify, model_app, operator_name
from nlp.cli_output import PlainFlagsGroup
from nlp.mining_cli import hotspots_command, reply_quality_command

log = logging.getLogger("bot.cli")  # also when run as `python -m bot.cli`

app = typer.Typer(help="Qinglian (清廉): public-reporting chatbot.", no_args_is_help=True,
                  pretty_exceptions_enable=False, cls=PlainFlagsGroup)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="Encryption keys of reporter data: generate, status, rotate.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(staff_app, name="staff")
evidence_app = typer.Typer(help="Evidence files: clean the ones stored before their metadata was removed.",
                           no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")
app.add_typer(wechat_app, name="wechat")
app.command()(classify)
app.add_typer(model_app)
app.command("hotspots")(hotspots_command)
app.command("reply-quality")(reply_quality_command)


def _settings() -> Settings:
    try:
        settings = load_settings()
        settings.resolved_secret_key()
        settings.resolved_keyring()
    except ConfigError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None
    return settings


def _writable_data_dir(settings: Settings) -> None:
    """A service stops with one line when its data directory cannot be written, before it starts anything."""
    try:
        writable_data_dir(settings.data_dir, settings.min_free_disk_mb)
    except ConfigError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None


def _model_cipher() -> Any:
    """The classifier models' encryption (`qinglian model …`, `qinglian classify`): the key ring's."""
    from storage.evidence_files import SealedFiles

    return SealedFiles(_settings().resolved_keyring())


@app.callback()
def _with_model_keys(ctx: typer.Context) -> None:
    ctx.obj = ModelKeys(_model_cipher, audit=audit_command, staff_labels=staff_labelled_reports)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run everything in one process: web chat, webhooks, the Telegram bot and the workers."""
    import uvicorn

    from bot.app import create_app

    settings = _settings()
    configure_logging(settings.log_level)
    _writable_data_dir(settings)
    _free_address(host, port)
    _migrate(settings)
    refuse_demo_admin_in_production(settings)
    telegram = "off (set QINGLIAN_TELEGRAM_TOKEN)"
    if settings.telegram_token:
        telegram = "webhook" if settings.telegram_webhook_url else "long polling"
    log.info("Qinglian: web chat on http://%s:%s/ · database %s · Telegram %s", host, port, _safe_url(settings),
             telegram)
    # uvicorn's own lines go through the same handler and format as every other line (bot.logs)
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                            access_log=False, lifespan="on", log_config=uvicorn_log_config())
    server = uvicorn.Server(config)
    run_service(server.serve())
    if not server.started:
        sys.exit(1)


def _free_address(host: str, port: int) -> None:
    """Exit 2 with one line when `serve` could not listen on host:port (another process there, a port below 1024
    without the right, an address of no interface here), before it migrates, loads the model or starts any work:
    uvicorn finds out only after all that. Binds it as uvicorn's asyncio server will (every address `host`
    resolves to; SO_REUSEADDR on POSIX, so a port in TIME_WAIT after a restart is free; IPv6 only on IPv6
    sockets) and lets go of it at once."""
    import errno
    import os
    import socket

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def refuse(reason: str) -> NoReturn:
        typer.echo(f"qinglian: cannot listen on {where} (--host, --port): {reason}", err=True)
        raise typer.Exit(2)

    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as problem:
        refuse(str(problem.strerror))
    for family, kind, protocol, _, address in dict.fromkeys(addresses):
        with socket.socket(family, kind, protocol) as probe:
            if os.name == "posix":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as problem:
                reason = (problem.strerror or str(problem)).lower()
                if problem.errno == errno.EADDRINUSE:
                    refuse(f"{reason}; stop what listens there (`ss -ltnp 'sport = :{port}'` names it) or choose "
                           "another --port")
                if problem.errno == errno.EACCES and port < 1024:
                    refuse(f"{reason}; a port below 1024 needs root or CAP_NET_BIND_SERVICE: listen on a higher "
                           "one behind the reverse proxy")
                if problem.errno == errno.EADDRNOTAVAIL:
                    refuse(f"{reason}; no interface of this machine has that address")
                refuse(reason)


def run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived service on uvloop where it is installed (uvicorn's standard extra brings it on
    Linux): its event loop and transports take a fraction of the default loop's CPU per message."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main)


def _migrate(settings: Settings, revision: str = "head") -> None:
    from storage.migrate import SchemaProblem, upgrade

    try:
        upgrade(settings.resolved_database_url, settings.resolved_keyring(), revision)
    except SchemaProblem as problem:  # a newer release's schema, or a migration that failed: not a connection
        typer.echo(f"qinglian: {_safe_url(settings)}: {problem}", err=True)
        raise typer.Exit(2) from None
    except DATABASE_UNAVAILABLE as exc:
        cannot_open_database(settings.resolved_database_url, exc)


def _safe_url(settings: Settings) -> str:
    from storage.db import masked_url

    return masked_url(settings.resolved_database_url)


@app.command()
def worker() -> None:
    """Run only the background work (outbox delivery, housekeeping, digests), without HTTP."""
    from bot.worker import run_worker

    settings = _settings()
    configure_logging(settings.log_level)
    _writable_data_dir(settings)
    _migrate(settings)
    run_service(run_worker(settings))


@app.command()
def check() -> None:
    """Validate the configuration and its connections (database, Telegram, WeChat) before going live."""
    from rich.console import Console

    from bot.check import read_configuration, run_checks

    console = Console(soft_wrap=True)  # one line per finding, also through a pipe (`| grep ✗`, a log): never cut
    settings, problems = read_configuration()
    if settings is None or problems:  # every problem of the configuration at once, before any connection
        for problem in problems:
            console.print(f"[red]✗[/red] {problem.name}: {problem.detail}", highlight=False)
        console.print(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in the configuration: correct "
                      f"{'them' if len(problems) > 1 else 'it'} (docs/deploy.md, section 4) and run `qinglian check` "
                      "again to check the connections", highlight=False)
        raise typer.Exit(2)
    findings = asyncio.run(run_checks(settings))
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
    _, where = _schema_state(settings)  # the revision it is at now, by its number (not "head")
    typer.echo(f"database at {_safe_url(settings)}: {where}")


def _schema_state(settings: Settings) -> tuple[bool, str]:
    """Whether the database is at the newest revision, and where it stands in words; exit code 2 with the reason
    when it cannot be opened."""
    from storage.migrate import DatabaseUnreachable, describe

    try:
        return describe(settings.resolved_database_url)
    except DatabaseUnreachable as problem:
        typer.echo(f"{_safe_url(settings)}: {problem}", err=True)
        raise typer.Exit(2) from None


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and whether it is the newest (exit code 1 when it is not)."""
    settings = _settings()
    newest, where = _schema_state(settings)
    typer.echo(f"{_safe_url(settings)}: {where}")
    if not newest:
        raise typer.Exit(1)


@db_app.command("backup")
def db_backup(file: Annotated[str, typer.Argument(help="The archive to write (.tar.gz or .qlbak).")],
              force: Annotated[bool, typer.Option("--force", help="Replace an archive of that name.")] = False,
              ) -> None:
    """Write a consistent backup: every table (one snapshot, safe while the service runs), the evidence
    files and the classifier models, with checksums of every member and a manifest.

    Rows and files are streamed into the archive in bounded pieces, so memory stays the same whatever
    the size of the database and of the evidence.

    The backup is database-agnostic: one taken from SQLite restores into PostgreSQL and back, which is
    how to move from the embedded default to production. Encrypted fields stay encrypted in the backup.
    The keys are not included: keep QINGLIAN_SECRET_KEY (or <data_dir>/secret.key), the encryption keys
    and QINGLIAN_PSEUDONYM_KEY, which a restore needs to keep receipt codes valid and reports readable.
    """
    from pathlib import Path

    from storage.backup import BackupError, create_backup

    archive = Path(file).resolve()  # the line a cron job's log keeps says where the archive went
    settings = _settings()
    # any revision is backed up as it is (before an upgrade, or a newer one before rolling back); no schema at all is
    # not the service's database: a backup of it would be empty, and look like any other
    require_schema(settings.resolved_database_url, any_revision=True,
                   hint="; nothing to back up. Run the backup with the service's settings (QINGLIAN_DATABASE_URL, "
                        "QINGLIAN_DATA_DIR): a cron job or timer does not read them by itself")
    if archive.exists() and not force:  # an earlier backup, perhaps the one that needs an old key, is kept
        typer.echo(f"qinglian: {archive} exists already; choose another name (e.g. with the date) or add --force",
                   err=True)
        raise typer.Exit(2)
    # audited first, so that the backup holds its own entry: restored, the log still says who took it, and where
    audit_command("db.backup", {"file": str(archive)})
    try:
        summary = create_backup(settings.resolved_database_url, settings.data_dir, archive)
    except BackupError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None
    rows = sum(summary.row_counts.values())
    typer.echo(f"backup of {_safe_url(settings)} (schema {summary.revision}) written to {summary.path}: "
               + fill("{rows} {rows:plural:row|rows} in {tables} {tables:plural:table|tables}, {files} "
                      "{files:plural:file|files}", rows=rows, tables=len(summary.row_counts), files=summary.file_count))


@db_app.command("restore")
def db_restore(
    file: Annotated[str, typer.Argument(help="A backup written by `qinglian db backup`.")],
    force: Annotated[bool, typer.Option("--force", help="Replace the data of a database that is not empty.")] = False,
) -> None:
    """Restore a backup into the configured database and data directory.

    Reads the whole archive once to check the manifest, every checksum and the row counts (a corrupt or
    truncated backup is refused before anything is written), creates or migrates the schema to the
    backup's revision, then reads it again and inserts every row in one transaction, in batches, and
    restores evidence and model files, then migrates to the newest schema. The source may be SQLite or
    PostgreSQL, whatever the target is. Refuses a target that already has data unless --force (which
    empties it first). Reads backups of format 1 (earlier releases) and 2.
    """
    from pathlib import Path

    from storage.backup import BackupError, restore_backup

    archive = Path(file).resolve()
    settings = _settings()
    try:
        summary = restore_backup(settings.resolved_database_url, settings.data_dir, archive,
                                 settings.resolved_keyring(), force=force)
    except BackupError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None
    audit_command("db.restore", {"file": str(archive), "revision": summary.revision,
                                 "rows": sum(summary.row_counts.values()), "files": summary.file_count,
                                 "replaced": force})
    typer.echo(f"restored {archive} into {_safe_url(settings)} (schema {summary.revision}):")
    for table_name, count in summary.row_counts.items():
        typer.echo(fill("  {table}: {n} {n:plural:row|rows}", table=table_name, n=count))
    typer.echo(f"  files: {summary.file_count}")


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new random encryption key (for QINGLIAN_ENCRYPTION_KEY); nothing is stored."""
    from storage.crypto import generate_key

    typer.echo(generate_key())


def _key_origins(settings: Settings) -> dict[str, str]:
    ring = settings.resolved_keyring()
    origins = {key_id: key.origin for key_id, key in ring.keys.items()}
    origins[ring.current.key_id] = f"{ring.current.origin}, current"
    return origins


@keys_app.command("status")
def keys_status() -> None:
    """How many stored values each key encrypts, per encrypted column; whether the key ring reads them all."""
    from rich.console import Console
    from rich.table import Table

    from nlp.registry import ModelRegistry
    from storage.db import create_engine
    from storage.keys import PLAINTEXT, evidence_status, file_status, key_status

    settings = _settings()
    require_schema(settings.resolved_database_url)
    origins = _key_origins(settings)

    async def run() -> dict[str, dict[str, int]]:
        engine = create_engine(settings.resolved_database_url, settings.resolved_keyring())
        try:
            return await key_status(engine)
        finally:
            await engine.dispose()

    try:
        status = asyncio.run(run())
    except DATABASE_UNAVAILABLE as exc:
        cannot_open_database(settings.resolved_database_url, exc)
    status["evidence files"] = evidence_status(settings.evidence_dir)
    status["classifier model files"] = file_status(
        path for path, _ in ModelRegistry(settings.data_dir / "models").artifact_files())
    console = Console()
    table = Table("column", "key id", "key", "values")
    totals: dict[str, int] = {}
    for label, counts in status.items():
        for key_id, count in sorted(counts.items()):
            totals[key_id] = totals.get(key_id, 0) + count
            known = origins.get(key_id)
            missing = "[yellow]not encrypted[/yellow]" if key_id == PLAINTEXT else "[red]not in the key ring[/red]"
            shown = known or missing
            table.add_row(label, key_id, shown, str(count))
    console.print(table)
    for key_id, origin in origins.items():
        console.print(f"key {key_id} ({origin}): {totals.get(key_id, 0)} values", highlight=False)
    unreadable = {key_id: count for key_id, count in totals.items() if key_id not in origins}
    if unreadable:
        console.print(f"[red]values under keys missing from the key ring: {unreadable}[/red]", highlight=False)
        raise typer.Exit(1)


@keys_app.command("rotate")
def keys_rotate(
    new_key: Annotated[str | None, typer.Option(
        "--new-key", help="Re-encrypt under this key instead of QINGLIAN_ENCRYPTION_KEY (with the service "
                          "stopped; set it as QINGLIAN_ENCRYPTION_KEY before starting again).")] = None,
    generate: Annotated[bool, typer.Option(
        "--generate", help="Like --new-key, with a newly generated key, which is printed.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction.")] = 200,
) -> None:
    """Re-encrypt every encrypted field under the current key (QINGLIAN_ENCRYPTION_KEY), batch by batch.

    Every key in QINGLIAN_ENCRYPTION_OLD_KEYS still decrypts. Safe while the service runs, when every
    process already has the same QINGLIAN_ENCRYPTION_KEY; interrupted, it continues where it stopped
    when run again. Afterwards `qinglian keys status` shows whether an old key is still needed.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nlp.registry import ModelRegistry
    from storage.crypto import CryptoError, DataKey, generate_key, parse_key
    from storage.db import create_engine
    from storage.keys import evidence_status, rotate, rotate_evidence, rotate_files

    if new_key and generate:
        typer.echo("qinglian: give either --new-key or --generate", err=True)
        raise typer.Exit(2)
    settings = _settings()
    require_schema(settings.resolved_database_url)
    ring = settings.resolved_keyring()
    target = ring.current
    printed_key = None
    if generate:
        new_key = printed_key = generate_key()
    if new_key:
        try:
            target = DataKey(parse_key(new_key), "--new-key")
        except CryptoError as problem:
            typer.echo(f"qinglian: the new key {problem}", err=True)
            raise typer.Exit(2) from None
    console = Console()
    console.print(f"re-encrypting under key {target.key_id} ({target.origin if target is ring.current else 'new'})",
                  highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        tasks: dict[str, object] = {}

        def on_start(table: str, total: int) -> None:
            tasks[table] = progress.add_task(table, total=total)

        def on_batch(table: str, done: int) -> None:
            progress.advance(tasks[table], done)  # type: ignore[arg-type]

        async def run() -> dict[str, int]:
            engine = create_engine(settings.resolved_database_url, settings.resolved_keyring())
            try:
                return await rotate(engine, ring, target, batch_size=batch_size, on_start=on_start,
                                    on_batch=on_batch)
            finally:
                await engine.dispose()

        try:
            changed = asyncio.run(run())
            file_task = progress.add_task("evidence files",
                                          total=sum(evidence_status(settings.evidence_dir).values()))
            changed["evidence files"] = rotate_evidence(settings.evidence_dir, ring, target,
                                                        on_file=lambda: progress.advance(file_task))
            registry = ModelRegistry(settings.data_dir / "models")
            with registry.locked():  # no model is saved, promoted or rolled back meanwhile
                model_files = registry.artifact_files()
                model_task = progress.add_task("classifier model files", total=len(model_files))
                changed["model files"] = rotate_files(model_files, ring, target,
                                                      on_file=lambda: progress.advance(model_task))
        except CryptoError as problem:
            progress.stop()
            typer.echo(f"qinglian: {problem}; nothing after the last finished batch was changed, "
                       "run the command again with the missing key in QINGLIAN_ENCRYPTION_OLD_KEYS", err=True)
            raise typer.Exit(1) from None
    file_count = changed.pop("evidence files", 0)
    model_count = changed.pop("model files", 0)
    # under the key rotated to, as every row now is: under the old one it would be the one value left to it
    audit_command("keys.rotate", {"key": target.key_id, "rows": sum(changed.values()), "evidence_files": file_count,
                                  "model_files": model_count}, keyring=ring.encrypting_with(target))
    console.print(f"{sum(changed.values())} rows and {file_count} evidence files re-encrypted under key "
                  f"{target.key_id}", highlight=False)
    console.print(f"{model_count} classifier model files re-encrypted", highlight=False)
    if target is not ring.current:
        console.print("Before the service starts again, set on every process:", highlight=False)
        console.print(f"  QINGLIAN_ENCRYPTION_KEY={printed_key or '<the key given with --new-key>'}", highlight=False)
        if settings.encryption_key:
            console.print(f"  QINGLIAN_ENCRYPTION_OLD_KEYS=<the key {ring.current.key_id} used until now>, kept until "
                          "`qinglian keys status` shows no value under it", highlight=False)


@evidence_app.command("clean")
def evidence_clean(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count the files to clean; change nothing.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows read per query.")] = 100,
) -> None:
    """Clean the evidence files stored before files were cleaned when taken: images re-encoded from their pixels,
    PDFs rewritten from their pages, the names residents' devices gave them dropped.

    Each file is rewritten (and an image's thumbnail made anew) in its own transaction with its row (the clean
    file's size and SHA-256, both hashes in the audit log). Safe while the service runs; interrupted, it continues
    where it stopped when run again. A file that cannot be cleaned is listed with the reason and left as it is
    (exit code 1).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from storage.db import Database
    from storage.evidence_cleaning import CleaningSummary, clean_stored_evidence

    settings = _settings()
    require_schema(settings.resolved_database_url)
    ring = settings.resolved_keyring()
    via = operator_name()
    console = Console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=dry_run) as progress:
        task = progress.add_task("evidence files", total=None)

        async def run() -> CleaningSummary:
            database = Database.connect(settings.resolved_database_url, ring)
            try:
                return await clean_stored_evidence(
                    database, ring, settings.evidence_dir, via=via, batch_size=batch_size, dry_run=dry_run,
                    on_start=lambda total: progress.update(task, total=total),
                    on_file=lambda: progress.advance(task))
            finally:
                await database.dispose()

        try:
            summary = asyncio.run(run())
        except DATABASE_UNAVAILABLE as exc:
            progress.stop()
            cannot_open_database(settings.resolved_database_url, exc)
    if dry_run:
        console.print(f"{summary.cleaned} evidence files to clean, {summary.already_clean} already clean "
                      "(dry run: nothing changed)", highlight=False)
        return
    console.print(f"{summary.cleaned} evidence files cleaned, {summary.already_clean} already clean, "
                  f"{len(summary.failed)} failed", highlight=False)
    for attachment_id, reason in summary.failed.items():
        console.print(f"  attachment {attachment_id}: {reason}", highlight=False)
    audit_command("evidence.clean", {"cleaned": summary.cleaned, "already_clean": summary.already_clean,
                                     "failed": len(summary.failed), "via": via})
    if summary.failed:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
