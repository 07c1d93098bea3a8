"""`X-Content-Type-Options: nosniff` on every answer of the service that does not say it already.

The JSON of the chat API, its refusals, a 404, the health and metrics answers: a browser that guessed another
type for one of them (an old one sniffing HTML in a JSON body that quotes a request) could run it as a page of
this origin. The pages set their own headers (the chat page in `bot/channels/web.py`, the console its own).
"""

from __future__ import annotations

NOSNIFF = (b"x-content-type-options", b"nosniff")
"""Added by `console.default_header.DefaultHeader` (`bot/app.py`)."""
