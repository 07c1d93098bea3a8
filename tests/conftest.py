"""Shared fixtures: databases (SQLite and the PostgreSQL on 127.0.0.1), a live service process."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_DSN = os.environ.get("QINGLIAN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

# The keys of reporter data for the whole test run, in the environment so that the services the tests
# start (LiveService) and the settings the tests build read the same keys as the key ring installed below.
TEST_ENCRYPTION_KEY = "TqcbPNlkElIz2tqM80uZ-xMF3OImwfVJvxPynk5SyaI"
TEST_PSEUDONYM_KEY = "9ZyJLwwfX2Ju79Vtkz55IGLoyoWte5JlMuF9J7yYPIc"
os.environ.setdefault("QINGLIAN_ENCRYPTION_KEY", TEST_ENCRYPTION_KEY)
os.environ.setdefault("QINGLIAN_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
# Staff passwords hashed at OWASP's minimum cost, the lowest a deployment may choose (`console.passwords`), in the
# environment so that the services and commands the tests start hash and check them so too: a sign-in then costs
# about 0.03 s of CPU instead of the default's 0.2 s, and the suite signs in and makes accounts about a thousand
# times. The default cost is tested where it is what a test is about (tests/console/test_passwords.py).
os.environ.setdefault("QINGLIAN_PASSWORD_HASH_MEMORY_KIB", "19456")
os.environ.setdefault("QINGLIAN_PASSWORD_HASH_TIME_COST", "2")
os.environ.setdefault("QINGLIAN_PASSWORD_HASH_PARALLELISM", "1")


def staff_password_hashing() -> Any:
    """How the tests' services hash staff passwords (the cost the environment above sets)."""
    from console.passwords import PasswordHashing

    return PasswordHashing(time_cost=int(os.environ["QINGLIAN_PASSWORD_HASH_TIME_COST"]),
                           memory_kib=int(os.environ["QINGLIAN_PASSWORD_HASH_MEMORY_KIB"]),
                           parallelism=int(os.environ["QINGLIAN_PASSWORD_HASH_PARALLELISM"]))


def make_test_keyring() -> Any:
    from storage.crypto import DataKey, KeyRing, parse_key

    return KeyRing(DataKey(parse_key(os.environ["QINGLIAN_ENCRYPTION_KEY"]), "test"),
                   pseudonym_key=parse_key(os.environ["QINGLIAN_PSEUDONYM_KEY"]))


def stored_value(value: str | None, column: str) -> str | None:
    """A value a test read from the database with plain SQL, decrypted with the test keys (`cases.place`)."""
    return None if value is None else make_test_keyring().decrypt(value, purpose=column)


def evidence_content(evidence_dir: Path, stored_name: str) -> bytes:
    """An evidence file as the resident sent it (files are stored encrypted)."""
    from storage.evidence_files import purpose_of, read_decrypted

    return b"".join(read_decrypted(make_test_keyring(), evidence_dir / stored_name, purpose=purpose_of(stored_name)))


@pytest.fixture
def keyring() -> Any:
    """The test key ring: the keys the services the tests start read from the environment."""
    return make_test_keyring()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _postgres_reachable() -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin DSN of the PostgreSQL on 127.0.0.1; CI must have it, a laptop may skip."""
    if not asyncio.run(_postgres_reachable()):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN} in CI")
        pytest.skip("PostgreSQL not reachable on 127.0.0.1")
    return POSTGRES_ADMIN_DSN


def create_postgres_database(admin_dsn: str, template: str | None = None) -> tuple[str, str]:
    """A fresh database, empty or a copy of `template` (a database nobody is connected to); returns (its name,
    its SQLAlchemy URL)."""
    import asyncpg

    name = f"qinglian_test_{secrets.token_hex(4)}"

    async def create() -> None:
        connection = await asyncpg.connect(admin_dsn)
        copied = f' TEMPLATE "{template}"' if template else ""
        await connection.execute(f'CREATE DATABASE "{name}"{copied}')
        await connection.close()

    asyncio.run(create())
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


def drop_postgres_database(admin_dsn: str, name: str) -> None:
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(admin_dsn)
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()

    asyncio.run(drop())


def city_file(directory: Path, limits: dict[str, int] | None = None, extra: str = "") -> Path:
    """The default city configuration with `limits` set in its [limits] table (a limit the default file does not
    spell out is added to it) and `extra` TOML appended, written to `directory`/city.toml."""
    from handlers.city import DEFAULT_CITY_CONFIG

    text = DEFAULT_CITY_CONFIG.read_text(encoding="utf-8")
    for name, value in (limits or {}).items():
        text, found = re.subn(rf"(?m)^{name} = \d+$", f"{name} = {value}", text)
        if not found:
            assert "[limits]\n" in text, "the default configuration has a [limits] table"
            text = text.replace("[limits]\n", f"[limits]\n{name} = {value}\n", 1)
    path = directory / "city.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


@contextmanager
def deployed_at(request: pytest.FixtureRequest, tmp_path: Path, revision: str) -> Iterator[str]:
    """A database of the fixture's backend (`request.param`: "sqlite" or "postgres") migrated to `revision`: an
    older deployment for a migration's test to fill and upgrade; a PostgreSQL one is dropped afterwards."""
    from storage.migrate import upgrade

    if request.param == "sqlite":
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'deployed.db'}", None
    else:
        name, url = create_postgres_database(request.getfixturevalue("postgres_server"))
    try:
        upgrade(url, make_test_keyring(), revision)
        yield url
    finally:
        if name is not None:
            drop_postgres_database(request.getfixturevalue("postgres_server"), name)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database migrated to the head once per test run, which each test's database is a copy of."""
    from storage.migrate import upgrade

    path = tmp_path_factory.mktemp("migrated") / "migrated.db"
    upgrade(f"sqlite+aiosqlite:///{path}", make_test_keyring())
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_server: str) -> Iterator[str]:
    """The name of a PostgreSQL database migrated to the head once per test run: each test's database is created
    from it as a template (a file copy on the server, half the time of running the migrations again)."""
    from storage.migrate import upgrade

    name, url = create_postgres_database(postgres_server)
    try:
        upgrade(url, make_test_keyring())
        yield name
    finally:
        drop_postgres_database(postgres_server, name)


def sqlite_copy(template: Path, path: Path) -> str:
    """A copy at `path` of the run's migrated SQLite database (`migrated_sqlite`): its URL."""
    assert not Path(f"{template}-wal").exists(), "the migrated template is closed, its log checkpointed"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


@contextmanager
def migrated_copy(request: pytest.FixtureRequest, directory: Path) -> Iterator[str]:
    """A copy of the run's migrated database of the backend `request.param` names ("sqlite": a file in
    `directory`; "postgres": a database made from the template, dropped afterwards): its URL."""
    if request.param == "sqlite":
        yield sqlite_copy(request.getfixturevalue("migrated_sqlite"), directory / "test.db")
        return
    admin = request.getfixturevalue("postgres_server")
    name, url = create_postgres_database(admin, template=request.getfixturevalue("migrated_postgres"))
    try:
        yield url
    finally:
        drop_postgres_database(admin, name)


@pytest.fixture(autouse=True)
def _finished_apps_are_collected() -> Iterator[None]:
    """FastAPI remembers how to call each route's and dependency's function in caches of 4,096 entries
    (`fastapi.dependencies.models`). A test process builds hundreds of apps (`bot.app.create_app`), and their route
    functions hold the app's runtime and model: the heap grew by about 7 MB an app, to 1.6 GB, and the full
    collection each app makes at start (`bot.app.release_free_memory`) took 2–5 s instead of 0.1 s. After each test
    those caches are emptied, so that a finished test's app is collected with everything it held."""
    yield
    import fastapi.dependencies.models as remembered

    for value in vars(remembered).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each backend: a copy of the run's migrated one (`migrated_sqlite`,
    `migrated_postgres`), exactly what the migrations make of an empty database."""
    with migrated_copy(request, tmp_path) as url:
        yield url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Any]:
    """The migrated database of each backend, as the application connects to it."""
    from storage.db import Database

    connected = Database.connect(database_url, make_test_keyring())
    yield connected
    await connected.dispose()


@pytest.fixture
def sessionmaker(database: Any) -> Any:
    """The write session factory of `database`."""
    return database.sessionmaker


_SHARED_MODELS: list[Path] = []


def shared_models_dir() -> Path:
    """The default classifier model, trained once per test run and copied into each service's data dir
    (the service would train the same deterministic model itself, only slower)."""
    if not _SHARED_MODELS:
        import tempfile

        from nlp.registry import ensure_default_model

        base = Path(tempfile.mkdtemp(prefix="qinglian-models-"))
        ensure_default_model(base)
        _SHARED_MODELS.append(base / "models")
    return _SHARED_MODELS[0]


class LiveService:
    """`qinglian serve` in its own process, as an operator would run it."""

    def __init__(self, data_dir: Path, env: dict[str, str], launcher: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.launcher = list(launcher)  # a command the service runs under (`inside`)
        self.port = free_port()
        self.env = {**os.environ, "QINGLIAN_DATA_DIR": str(data_dir), "QINGLIAN_LOG_LEVEL": "INFO", **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"service-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        import shutil

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "models").exists():
            shutil.copytree(shared_models_dir(), self.data_dir / "models")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self.launcher, sys.executable, "-m", "bot.cli", "serve", "--port", str(self.port)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        # one client for the whole wait: each new one builds a TLS context from the CA bundle (about 50 ms of CPU,
        # taken from the starting service, five times a second)
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"service exited: {self.log_path.read_text(errors='replace')[-3000:]}")
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"service did not start: {self.log_path.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def evidence_unwritable(data_dir: Path, full: Path | None = None) -> Iterator[Path]:
    """A service's evidence directory set aside and, while in the block, a link to `full` (a full disk), or without
    one a plain file where the directory should be (as a failed mount can leave it); put back after. Yields the
    evidence directory's path."""
    evidence, aside = data_dir / "evidence", data_dir / "evidence-aside"
    if evidence.exists():
        evidence.rename(aside)
    if full is None:
        evidence.write_text("a file where the evidence directory should be")
    else:
        evidence.symlink_to(full)
    try:
        yield evidence
    finally:
        evidence.unlink()
        if aside.exists():
            aside.rename(evidence)


@contextmanager
def full_filesystem(mount_point: Path, size: str = "256k") -> Iterator[Path]:
    """A filesystem with no space left, for what a full disk does to the service: a tmpfs of `size` filled to its last
    block (by a file named `filler`: removing it makes room), mounted on `mount_point` in a mount namespace of its
    own (`unshare`: a user namespace makes the test's user root there, so this needs no privilege where the kernel
    allows unprivileged user namespaces, and the machine's own mounts are untouched). Yields the path every process
    of the test's user reaches it by: /proc/<pid>/root/<mount_point> of the process that holds the namespace.
    Skips the test where no such namespace can be made."""
    mount_point.mkdir(parents=True, exist_ok=True)
    script = (f'mount -t tmpfs -o size={size} qinglian-full "$1" || exit 1; cat /dev/zero > "$1/filler" 2>/dev/null; '
              'echo full; exec sleep 3600')
    try:
        holder = subprocess.Popen(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
                                   str(mount_point)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except FileNotFoundError:
        pytest.skip("no unshare command to mount a full filesystem with")
    try:
        if holder.stdout is None or holder.stdout.readline().strip() != "full":
            pytest.skip("no user and mount namespace to mount a full filesystem in")
        yield Path(f"/proc/{holder.pid}/root") / mount_point.relative_to("/")
    finally:
        holder.kill()
        holder.wait()


def inside(full: Path) -> list[str]:
    """The command prefix that runs a program in the mount namespace of `full_filesystem`'s `full`, where the full
    filesystem is at its mount point itself (SQLite resolves the /proc/<pid>/root link to the machine's root)."""
    return ["nsenter", "-t", full.parts[2], "--user", "--mount", "--preserve-credentials"]
