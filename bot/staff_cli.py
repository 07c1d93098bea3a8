"""`qinglian staff …`: staff accounts from the shell, and the first administrator on a fresh install."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli_errors import DATABASE_UNAVAILABLE, cannot_open_database, require_schema
from bot.config import ConfigError, Settings, load_settings
from console.passwords import PasswordHashing
from handlers.texts import fill
from nlp.cli import operator_name
from storage import audit, staff_actions, training_data
from storage.actions import ActionError
from storage.crypto import KeyRing
from storage.db import Database, masked_url
from storage.migrate import DatabaseUnreachable, has_schema
from storage.models import StaffRole, StaffUser

staff_app = typer.Typer(help="Staff accounts of the console.", no_args_is_help=True)
T = TypeVar("T")

DEMO_ADMIN = "demo-admin"
PRODUCTION_FIRST_ADMIN = ("No staff account exists yet. Create the first administrator with:\n"
                          "  qinglian staff add <username> --role admin")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None


def audit_command(action: str, detail: dict[str, Any], *, keyring: KeyRing | None = None) -> None:
    """Write an administrator's command (`qinglian model promote`, …) into the audit log, as the console writes its
    own, without a staff actor (the command puts who ran it in `detail`). When the database cannot be written, the
    command says so and fails: what it did stands, but it is not audited. `keyring` (default: the settings')
    encrypts the entry: a key rotation's entry is written under the key it rotated to."""

    async def work(session: AsyncSession) -> None:
        await audit.record(session, None, action, detail=detail)

    settings = _settings()
    try:
        deployed = asyncio.run(has_schema(settings.resolved_database_url))
    except DatabaseUnreachable as problem:
        typer.echo(f"qinglian: {problem} ({action} was done, but it is not in the audit log)", err=True)
        raise typer.Exit(2) from None
    if not deployed:  # no service has run on this database: there is no audit log to write to
        typer.echo(f"qinglian: {action} is not in an audit log: the database at "
                   f"{masked_url(settings.resolved_database_url)} has not been set up (`qinglian db upgrade`)",
                   err=True)
        return
    _run(work, unavailable=f"{action} was done, but it is not in the audit log", keyring=keyring, needs_schema=False)


def staff_labelled_reports() -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The reports whose label staff confirmed or corrected, read from the configured database as the console's
    "train now" reads them (`qinglian model train --staff-labels`), and how many of each kind."""

    async def work(session: AsyncSession) -> tuple[list[tuple[str, str]], dict[str, int]]:
        return await training_data.training_examples(session), await training_data.staff_label_counts(session)

    return _run(work, writes=False, unavailable="the staff-labelled reports cannot be read")


def _run(work: Callable[[AsyncSession], Awaitable[T]], *, writes: bool = True, unavailable: str = "",
         keyring: KeyRing | None = None, needs_schema: bool = True) -> T:
    """Run `work` in one transaction (a read-only one unless it `writes`) and turn an `ActionError`, or a database
    that cannot be opened (`unavailable`: what that means for the command), into the command's one-line error. A
    database not at the newest schema is refused first, with where it stands (unless not `needs_schema`)."""
    settings = _settings()
    if needs_schema:
        require_schema(settings.resolved_database_url)

    async def go() -> T:
        database = Database.connect(settings.resolved_database_url, keyring or settings.resolved_keyring())
        try:
            if writes:
                async with database.sessionmaker.begin() as session:
                    session.info[audit.AUDIT_VIA] = operator_name()  # who ran the command, in what it audits
                    return await work(session)
            async with database.read_sessionmaker() as session:
                return await work(session)
        finally:
            await database.dispose()

    try:
        return asyncio.run(go())
    except ActionError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None
    except DATABASE_UNAVAILABLE as problem:
        cannot_open_database(settings.resolved_database_url, problem, unavailable)


def _hand_over(username: str) -> str:
    """What the operator tells the owner of a password someone else chose."""
    return (f"give {username} the password: they sign in at {_settings().public_url}/console and choose their own "
            "password there before anything else")


async def _user(session: AsyncSession, username: str) -> StaffUser:
    user = await staff_actions.get_staff_by_username(session, username)
    if user is None:
        raise ActionError(f"no staff user {username!r}")
    return user


def _password(value: str | None, *, user_inputs: tuple[str, ...] = ()) -> str:
    """The hash of `value`, or of a password typed twice (hidden: a single mistyped one made an account nobody could
    sign in to)."""
    password = value or typer.prompt("Password (at least 10 characters, hard to guess)", hide_input=True,
                                     confirmation_prompt="Password again")
    try:
        return _settings().password_hashing.hash(password, user_inputs=user_inputs)
    except ValueError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None


def _check_queues(queues: list[str]) -> None:
    known = {q.code for q in _settings().city.queues}
    unknown = sorted(set(queues) - known)
    if unknown:
        typer.echo(fill("qinglian: unknown {n:plural:queue|queues} {names}; configured: {known}", n=len(unknown),
                        names=", ".join(unknown), known=", ".join(sorted(known))), err=True)
        raise typer.Exit(2)


@staff_app.command("add")
def add(
    username: str,
    role: Annotated[StaffRole, typer.Option(help="reviewer, supervisor or admin")] = StaffRole.REVIEWER,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    queue: Annotated[list[str] | None, typer.Option(help="Queue to work in (repeatable)")] = None,
    password: Annotated[str | None, typer.Option(help="Asked for when not given")] = None,
) -> None:
    """Create a staff account. A reviewer without queues sees no cases: it is created with a warning."""
    queues = queue or []
    _check_queues(queues)

    async def free(session: AsyncSession) -> None:
        taken = await staff_actions.name_taken(session, username)
        if taken is not None:
            raise taken

    _run(free, writes=False)  # before the password is asked for, not after
    password_hash = _password(password, user_inputs=(username, name or username))

    async def work(session: AsyncSession) -> bool:
        # the first account (beside a development start's demo administrator) is the operator's own (docs/deploy.md
        # §7); any other gets a password its owner did not choose, replaced at the first sign-in, as with an account
        # the console makes
        for_someone_else = any(user.username != DEMO_ADMIN for user in await staff_actions.list_staff(session))
        user = await staff_actions.create_staff(session, username=username, display_name=name or username,
                                                role=role, password_hash=password_hash,
                                                must_change_password=for_someone_else)
        await staff_actions.set_queues(session, user, queues)
        return for_someone_else

    for_someone_else = _run(work)
    typer.echo(f"created {role.value} {username}" + (f" in {', '.join(queues)}" if queues else ""))
    typer.echo(_hand_over(username) if for_someone_else else f"sign in at {_settings().public_url}/console")
    if role == StaffRole.REVIEWER and not queues:
        typer.echo(f"warning: reviewer {username} has no queues and sees no cases; give them some with "
                   f"`qinglian staff assign {username} <queue> ...`", err=True)


@staff_app.command("list")
def list_() -> None:
    """List staff accounts with their roles and queues."""
    users = _run(staff_actions.list_staff, writes=False)
    table = Table("username", "name", "role", "queues", "active", "2FA", "last login")
    for column in table.columns:
        column.no_wrap = True
        column.overflow = "ignore"
    for user in users:
        table.add_row(user.username, user.display_name, user.role, ", ".join(q.queue for q in user.queues) or "-",
                      "yes" if user.active else "no",
                      "on" if user.totp_secret else ("required" if user.totp_required else "off"),
                      f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "-")
    # As wide as the longest row, whatever the terminal: a name is never cut or wrapped (a pipe or a narrow
    # terminal would otherwise get "王…").
    console = Console(width=10_000)
    console.print(table, width=console.measure(table).maximum, crop=False)


@staff_app.command("disable")
def disable(username: str) -> None:
    """Disable an account: its sessions end and its API tokens are revoked."""

    async def work(session: AsyncSession) -> None:
        await staff_actions.set_active(session, await _user(session, username), False)

    _run(work)
    typer.echo(f"disabled {username}")


@staff_app.command("enable")
def enable(username: str) -> None:
    """Enable a disabled account again."""

    async def work(session: AsyncSession) -> None:
        await staff_actions.set_active(session, await _user(session, username), True)

    _run(work)
    typer.echo(f"enabled {username}")


@staff_app.command("reset-password")
def reset_password(username: str, password: Annotated[str | None, typer.Option()] = None) -> None:
    """Set a new password (asked for when not given): open sessions end, the account's API tokens are revoked,
    and its owner chooses their own password at the next console login."""
    password_hash = _password(password, user_inputs=(username,))

    async def work(session: AsyncSession) -> int:
        return await staff_actions.set_password(session, await _user(session, username), password_hash,
                                                must_change=True)

    revoked = _run(work)
    typer.echo(f"password of {username} changed")
    if revoked:
        typer.echo(fill("revoked {n} API {n:plural:token|tokens} of {username}", n=revoked, username=username))
    typer.echo(_hand_over(username))


@staff_app.command("assign")
def assign(
    username: str, queue: Annotated[list[str], typer.Argument(help="Queues (replaces the current set)")]
) -> None:
    """Set the queues a reviewer works in."""
    _check_queues(queue)

    async def work(session: AsyncSession) -> None:
        await staff_actions.set_queues(session, await _user(session, username), queue)

    _run(work)
    typer.echo(f"{username} works in {', '.join(sorted(set(queue)))}")


@staff_app.command("role")
def role(username: str, new_role: Annotated[StaffRole, typer.Argument()]) -> None:
    """Change an account's role."""

    async def work(session: AsyncSession) -> None:
        await staff_actions.set_role(session, await _user(session, username), new_role, actor=None)

    _run(work)
    typer.echo(f"{username} is now {new_role.value}")


DEMO_ADMIN_IN_PRODUCTION = (f"the demo administrator '{DEMO_ADMIN}' is active; production refuses to start with it. "
                            f"Create a real administrator (qinglian staff add <username> --role admin), then "
                            f"run: qinglian staff disable {DEMO_ADMIN}")


def refuse_demo_admin_in_production(settings: Settings) -> None:
    """Before a production service starts: an active demo administrator stops it with one line (exit code 2),
    not with the traceback of a failed start-up."""
    if settings.environment != "production":
        return

    async def active() -> bool:
        database = Database.connect(settings.resolved_database_url, settings.resolved_keyring())
        try:
            async with database.read_sessionmaker() as session:
                demo = await staff_actions.get_staff_by_username(session, DEMO_ADMIN)
                return demo is not None and demo.active
        finally:
            await database.dispose()

    if asyncio.run(active()):
        typer.echo(f"qinglian: {DEMO_ADMIN_IN_PRODUCTION}", err=True)
        raise typer.Exit(2)


async def ensure_first_admin(database: Database, environment: Literal["development", "production"],
                             passwords: PasswordHashing) -> str | None:
    """On an empty staff table: a clearly marked demo administrator in development, or instructions in
    production. Returns what to print (None when staff accounts exist). In production an active demo
    administrator (made by a development start on the same database) stops the start: ConfigError."""
    async with database.read_sessionmaker() as session:
        if environment == "production":
            demo = await staff_actions.get_staff_by_username(session, DEMO_ADMIN)
            if demo is not None and demo.active:
                raise ConfigError(DEMO_ADMIN_IN_PRODUCTION)
        if await staff_actions.count_staff(session):
            return None
    if environment == "production":
        return PRODUCTION_FIRST_ADMIN
    password = secrets.token_urlsafe(12)
    password_hash = await asyncio.to_thread(passwords.hash, password)
    async with database.sessionmaker.begin() as session:
        created = await staff_actions.create_first_admin(session, username=DEMO_ADMIN,
                                                         display_name="DEMO administrator",
                                                         password_hash=password_hash)
    if created is None:  # another worker created one meanwhile
        return None
    return (f"DEMO ONLY — created administrator '{DEMO_ADMIN}' with password {password} for the embedded default;\n"
            "  change it when you first sign in (the console asks for a new one before anything else).\n"
            "  Create real accounts with `qinglian staff add` and disable this one: "
            f"qinglian staff disable {DEMO_ADMIN}")
