"""Settings and the city configuration: defaults, validation, one-line errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.runtime import Runtime
from handlers.city import DEFAULT_CITY_CONFIG, load_city_config


def test_default_configuration_is_changsha_and_routes_every_label() -> None:
    city = load_city_config(None)
    assert [d.zh for d in city.districts] == ["芙蓉区", "天心区", "岳麓区", "开福区", "雨花区", "望城区", "长沙县",
                                              "浏阳市", "宁乡市"]
    assert set(city.routing.labels) == {"slow_service", "lazy_procrastination", "formalism", "project_irregularity",
                                        "village_affairs", "medical", "education", "bribery_gifts", "other"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "city.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_routing_to_a_missing_queue_is_refused_with_the_reason(tmp_path: Path) -> None:
    text = DEFAULT_CITY_CONFIG.read_text(encoding="utf-8").replace('medical = "clean_medical"',
                                                                    'medical = "hospitals"')
    with pytest.raises(ConfigError, match=r"routing\.labels\.medical: routes to unknown queue 'hospitals'"):
        load_city_config(_write(tmp_path, text))


def test_a_district_without_its_queue_is_refused(tmp_path: Path) -> None:
    text = DEFAULT_CITY_CONFIG.read_text(encoding="utf-8").replace(
        '{ code = "ningxiang", zh = "宁乡市", en = "Ningxiang" },',
        '{ code = "ningxiang", zh = "宁乡市", en = "Ningxiang" },\n'
        '    { code = "xiangjiang", zh = "湘江新区", en = "Xiangjiang" },')
    with pytest.raises(ConfigError, match="district_xiangjiang"):
        load_city_config(_write(tmp_path, text))


def test_broken_toml_and_missing_file_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_city_config(_write(tmp_path, "districts = [\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_city_config(tmp_path / "nope.toml")


def test_production_refuses_a_placeholder_secret(tmp_path: Path) -> None:
    settings = load_settings(environment="production", data_dir=tmp_path, secret_key="change-me")
    with pytest.raises(ConfigError, match="QINGLIAN_SECRET_KEY") as unset:
        settings.resolved_secret_key()
    short = load_settings(environment="production", data_dir=tmp_path, secret_key="a1b2c3d4e5f6")
    with pytest.raises(ConfigError, match="at least 32 characters") as too_short:
        short.resolved_secret_key()
    for problem in (unset, too_short):  # the line says how to make one, not only that it is wrong
        assert "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'" in str(problem.value)
    random_key = "ZCZC6UKxcwPhPOcM8n6l22BAie7ui-V-mGQbm5-O0qxCy3ds"  # production refuses a guessable one
    good = load_settings(environment="production", data_dir=tmp_path, secret_key=random_key)
    assert good.resolved_secret_key() == random_key.encode()


@pytest.mark.parametrize(("field", "value"), [
    ("public_url", "https://CHANGE_ME.example.org"), ("wechat_app_id", "CHANGE_ME"),
    ("wechat_app_secret", "CHANGE_ME"), ("database_url", "postgresql+asyncpg://qinglian:CHANGE_ME@127.0.0.1/qinglian"),
    ("telegram_webhook_url", "https://CHANGE_ME.example.org/telegram/webhook"),
    ("metrics_token", "CHANGE_ME")])  # a scraper's token anyone reading the example could send
def test_production_refuses_the_example_files_placeholders(tmp_path: Path, field: str, value: str) -> None:
    """deploy.md promises each placeholder stops the start; the public URL and the WeChat app's id and secret did
    not (seen deploying with the example environment file)."""
    with pytest.raises(ConfigError) as problem:
        load_settings(environment="production", data_dir=tmp_path, **{field: value})
    assert str(problem.value) == (f"invalid setting QINGLIAN_{field.upper()}: still holds the example's CHANGE_ME "
                                  "placeholder; set the real value")


def test_a_development_secret_that_a_full_disk_cut_short_is_not_left_empty(tmp_path: Path) -> None:
    """Seen starting on a full disk in development: `secret.key` was created and its write failed, and the empty
    file it left became the secret key of the next start (every receipt code hashed under an empty key). The start
    stops with the one line and leaves no key file; the first start with room generates a real key."""
    from tests.conftest import full_filesystem

    with full_filesystem(tmp_path / "disk") as full:
        settings = load_settings(data_dir=full, environment="development", secret_key=None)
        with pytest.raises(ConfigError, match="cannot be written: No space left on device"):
            settings.resolved_secret_key()
        assert sorted(path.name for path in full.iterdir()) == ["filler"]


def test_development_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_settings(data_dir=tmp_path).resolved_secret_key()
    second = load_settings(data_dir=tmp_path).resolved_secret_key()
    assert first == second and len(first) >= 48


@pytest.mark.parametrize(("field", "value", "message"), [
    ("database_url", "mysql://x", "invalid setting QINGLIAN_DATABASE_URL: must start with sqlite+aiosqlite://"),
    ("database_url", "postgresql+asyncpg://qinglian:p@ss@127.0.0.1/qinglian",
     "invalid setting QINGLIAN_DATABASE_URL: holds an '@' in its user name or password, which must be written "
     "%40 (postgresql+asyncpg://user:p%40ss@host/db)"),
    ("database_url", "postgresql+asyncpg://qinglian:p@ss@[::1:5432/qinglian",
     "invalid setting QINGLIAN_DATABASE_URL: is not a database URL (postgresql+asyncpg://user:password@host/db; "
     "write '@' in the password as %40)"),
    # seen deploying: without a database name asyncpg connects to the one named like the user (here `postgres`),
    # and the service's tables were made there, beside whatever else it holds
    ("database_url", "postgresql+asyncpg://postgres@127.0.0.1:5432",
     "invalid setting QINGLIAN_DATABASE_URL: names no database (postgresql+asyncpg://user:password@host/qinglian)"),
    ("database_url", "postgresql+asyncpg://postgres@127.0.0.1:5432/",
     "invalid setting QINGLIAN_DATABASE_URL: names no database (postgresql+asyncpg://user:password@host/qinglian)"),
    ("telegram_api_url", "ftp://x", "invalid setting QINGLIAN_TELEGRAM_API_URL: must be an http(s) URL"),
    ("telegram_webhook_url", "not a url", "invalid setting QINGLIAN_TELEGRAM_WEBHOOK_URL: must be an http(s) URL"),
    ("redis_url", "http://127.0.0.1:6379/0", "invalid setting QINGLIAN_REDIS_URL: must start with redis://"),
])
def test_bad_settings_name_the_variable(field: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as problem:
        load_settings(**{field: value})
    assert str(problem.value).startswith(message)


def test_the_model_check_interval_is_two_seconds_unless_set_and_must_be_positive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(data_dir=tmp_path).model_check_seconds == 2.0
    monkeypatch.setenv("QINGLIAN_MODEL_CHECK_SECONDS", "0.5")
    assert load_settings(data_dir=tmp_path).model_check_seconds == 0.5
    for wrong in ("0", "-1", "soon"):
        monkeypatch.setenv("QINGLIAN_MODEL_CHECK_SECONDS", wrong)
        with pytest.raises(ConfigError, match="invalid setting QINGLIAN_MODEL_CHECK_SECONDS"):
            load_settings(data_dir=tmp_path)


def test_the_read_timeout_is_thirty_seconds_unless_set_and_reaches_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(data_dir=tmp_path).read_timeout_seconds == 30.0
    monkeypatch.setenv("QINGLIAN_READ_TIMEOUT_SECONDS", "4.5")
    settings = load_settings(data_dir=tmp_path)
    runtime = Runtime.build(settings)
    try:
        assert runtime.database.read_timeout == 4.5
    finally:
        asyncio.run(runtime.close())
    for wrong in ("0", "-1", "7200", "long"):
        monkeypatch.setenv("QINGLIAN_READ_TIMEOUT_SECONDS", wrong)
        with pytest.raises(ConfigError, match="invalid setting QINGLIAN_READ_TIMEOUT_SECONDS"):
            load_settings(data_dir=tmp_path)


def test_one_heavy_read_at_a_time_unless_set_and_it_reaches_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(data_dir=tmp_path).heavy_reads == 1
    monkeypatch.setenv("QINGLIAN_HEAVY_READS", "3")
    runtime = Runtime.build(load_settings(data_dir=tmp_path))
    try:
        assert runtime.database.heavy_reads == 3
    finally:
        asyncio.run(runtime.close())
    for wrong in ("0", "65", "some"):
        monkeypatch.setenv("QINGLIAN_HEAVY_READS", wrong)
        with pytest.raises(ConfigError, match="invalid setting QINGLIAN_HEAVY_READS"):
            load_settings(data_dir=tmp_path)


def test_a_misspelt_setting_stops_the_start_naming_the_setting_it_was_meant_to_be(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen deploying: QINGLIAN_ENVIROMENT=production ran the service in development (a demo administrator made on
    the empty production database, its password in the log), QINGLIAN_DATABSE_URL put every report into SQLite in
    the data directory, QINGLIAN_PSEUDONYM_KEYS left the derived key in use until someone noticed — each misspelt name
    was ignored without a word. A name that is no setting but a near miss of one is now refused; the variables of the
    city's WeCom robots, of compose and of the test suite are not near any."""
    import subprocess
    import sys

    from tests.conftest import REPO

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QINGLIAN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QINGLIAN_ENVIROMENT", "production")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert str(refused.value) == ("QINGLIAN_ENVIROMENT is not a setting: did you mean QINGLIAN_ENVIRONMENT? Correct "
                                  "its name (it is not read as it is, and the service would run without it)")
    monkeypatch.delenv("QINGLIAN_ENVIROMENT")
    (tmp_path / ".env").write_text("QINGLIAN_DATABSE_URL=postgresql+asyncpg://q@127.0.0.1/q\n", encoding="utf-8")
    with pytest.raises(ConfigError,
                       match=r"^QINGLIAN_DATABSE_URL is not a setting: did you mean QINGLIAN_DATABASE_URL\?"):
        load_settings()
    (tmp_path / ".env").unlink()

    for unrelated in ("QINGLIAN_IMAGE", "QINGLIAN_TEST_POSTGRES", "QINGLIAN_SCREENSHOTS_DIR", "QINGLIAN_WECOM_HALL"):
        monkeypatch.setenv(unrelated, "x")
    assert load_settings().environment == "development"

    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "QINGLIAN_DATA_DIR": str(tmp_path / "data"),
           "QINGLIAN_PSEUDONYM_KEYS": "9ZyJLwwfX2Ju79Vtkz55IGLoyoWte5JlMuF9J7yYPIc"}
    check = subprocess.run([sys.executable, "-m", "bot.cli", "check"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
    assert (check.returncode, check.stderr) == (2, "")  # `check` lists every problem of the configuration
    assert check.stdout == (
        "✗ QINGLIAN_PSEUDONYM_KEYS: is not a setting: did you mean QINGLIAN_PSEUDONYM_KEY? Correct its name (it "
        "is not read as it is, and the service would run without it)\n"
        "1 problem in the configuration: correct it (docs/deploy.md, section 4) and run `qinglian check` again to "
        "check the connections\n")
