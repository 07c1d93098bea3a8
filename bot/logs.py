"""The service's one log format, for every line `serve` and `worker` write: ours, the libraries', uvicorn's own,
and the child process that trains the default model on a first start — `time level logger: message`, one line
per event (docs/deploy.md, section 15), so that a log collector parses each of them and a terminal stays readable."""

from __future__ import annotations

import logging
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

CONTENT_CARRYING_LOGGERS = ("telegram", "aiosqlite", "httpcore")
"""Libraries whose DEBUG lines dump what they carry: they stay at INFO even with QINGLIAN_LOG_LEVEL=DEBUG.
python-telegram-bot logs the bot token (in the Bot API address), every update and every message sent (the
residents' chat ids and words, the receipt codes); aiosqlite every statement with its parameters (staff sessions'
tokens, password hashes); httpcore the connections to the channels."""

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic's INFO lines (plugins set up, "Context impl …") would come before the one line that says why the
    # database cannot be opened; its warnings and errors still show, its INFO with QINGLIAN_LOG_LEVEL=DEBUG.
    logging.getLogger("alembic").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    for carrier in CONTENT_CARRYING_LOGGERS:
        logging.getLogger(carrier).setLevel(max(logging.INFO, logging.getLevelName(level)))


class _UvicornName(logging.Filter):
    """uvicorn writes its start and stop lines ("Started server process", "Application startup complete") to the
    logger `uvicorn.error`: named so, an INFO line would be found by whoever looks for errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":
            record.name = "uvicorn"
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's `log_config`: its loggers keep no handler and format of their own, their lines go through the
    root logger's (`configure_logging`) like every other line. Loggers made before it are left as they are."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"uvicorn_name": {"()": _UvicornName}},
        "loggers": {name: {"handlers": [], "propagate": True,
                           **({"filters": ["uvicorn_name"]} if name == "uvicorn.error" else {})}
                    for name in UVICORN_LOGGERS},
    }


def one_line(text: str) -> str:
    """A notice written for a terminal over several lines, as the one line of a log record."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
