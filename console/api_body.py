"""What the staff API takes as a request body: JSON, said so by its Content-Type, that means one thing.

FastAPI reads a body of any declared type as JSON when it can, and Python's reader takes the last of a key given
twice and the words NaN and Infinity as numbers. A body sent as text or a form was refused with "Input should be a
valid dictionary" (which does not say what to change); a key given twice was read as its last value, though a
proxy or a log reading the first would record another request than the one done.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Ambiguous(ValueError):
    """A JSON body that Python's reader would take, with one of two meanings or a number JSON does not have."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Ambiguous(f"the JSON body gives the key {key[:60]!r} twice")
        seen[key] = value
    return seen


def _constant(word: str) -> float:
    raise _Ambiguous(f"{word} is not a JSON number")


def _is_json(content_type: str) -> bool:
    """As FastAPI decides it: application/json or an application/…+json type (a body without a Content-Type is not
    read as JSON)."""
    main, _, sub = content_type.split(";", 1)[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def plain_json_body(request: Request) -> None:
    """A dependency of every API operation: a body that is not JSON is a 415, a key given twice or NaN/Infinity a
    422, each with its reason (a body that does not parse is left to FastAPI, which says where)."""
    if request.method not in BODY_METHODS:
        return
    body = await request.body()  # FastAPI has read it already: this is its copy
    if not body.strip():
        return
    if not _is_json(request.headers.get("content-type", "")):
        raise HTTPException(415, "send the body as JSON, with the header Content-Type: application/json")
    try:
        json.loads(body, object_pairs_hook=_pairs, parse_constant=_constant)
    except _Ambiguous as problem:
        raise HTTPException(422, str(problem)) from None
    except ValueError:  # not JSON (UnicodeDecodeError is one): FastAPI's own reasons say where
        return
