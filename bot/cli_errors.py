"""The one line a command prints when the database cannot be opened, shared by every `qinglian` command."""

from __future__ import annotations

from typing import NoReturn

import typer

from storage.db import DATABASE_UNAVAILABLE, masked_url

__all__ = ["DATABASE_UNAVAILABLE", "cannot_open_database"]


def cannot_open_database(database_url: str, problem: BaseException, consequence: str = "") -> NoReturn:
    """Exit 2 with "cannot open the database at <url, password masked>: <first line of the reason>", and what it
    means for what the command did (`consequence`), if anything."""
    reason = str(getattr(problem, "orig", None) or problem).splitlines()
    typer.echo(f"qinglian: cannot open the database at {masked_url(database_url)}: "
               f"{reason[0] if reason else problem.__class__.__name__}" + (f" ({consequence})" if consequence else ""),
               err=True)
    raise typer.Exit(2) from None
