"""`qinglian wechat …`: publishing the Official Account's custom menu."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import httpx
import typer

from bot.channels.wechat.api import WeChatApi, WeChatApiError, menu_definition
from bot.config import ConfigError, Settings
from handlers.texts import Texts

wechat_app = typer.Typer(help="WeChat Official Account.", no_args_is_help=True)


async def publish_menu(settings: Settings, definition: dict[str, Any]) -> None:
    from storage.db import create_engine, create_sessionmaker

    engine = create_engine(settings.resolved_database_url, settings.resolved_keyring())
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            api = WeChatApi(settings, create_sessionmaker(engine), http)
            await api.post("/cgi-bin/menu/create", definition)
    finally:
        await engine.dispose()


@wechat_app.command("menu")
def menu_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the menu instead of publishing it.")] = False,
    locale: Annotated[str | None, typer.Option(help="Language of the button names (zh or en).")] = None,
) -> None:
    """Publish the account's custom menu: report, check a case, help."""
    from bot.config import load_settings
    from storage.migrate import upgrade

    try:
        settings = load_settings()
    except ConfigError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None
    language = locale or settings.city.default_locale
    if language not in ("zh", "en"):
        typer.echo("qinglian: --locale must be zh or en", err=True)
        raise typer.Exit(2)
    definition = menu_definition(Texts(settings.city.texts), language)
    if dry_run:
        typer.echo(json.dumps(definition, ensure_ascii=False, indent=2))
        return
    if not (settings.wechat_app_id and settings.wechat_app_secret):
        typer.echo("qinglian: set QINGLIAN_WECHAT_APP_ID and QINGLIAN_WECHAT_APP_SECRET to publish the menu", err=True)
        raise typer.Exit(2)
    try:
        # the shared access token lives in the database
        upgrade(settings.resolved_database_url, settings.resolved_keyring())
        asyncio.run(publish_menu(settings, definition))
    except WeChatApiError as problem:
        typer.echo(f"qinglian: WeChat refused the menu: {problem}", err=True)
        raise typer.Exit(1) from None
    except httpx.HTTPError as problem:
        typer.echo(f"qinglian: WeChat API at {settings.wechat_api_url} not reachable: {problem}", err=True)
        raise typer.Exit(1) from None
    names = " / ".join(button["name"] for button in definition["button"])
    typer.echo(f"menu published: {names}")
