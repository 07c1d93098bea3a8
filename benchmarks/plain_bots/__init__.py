"""Two minimal bots with in-memory state that run the same report dialog as Qinglian's Telegram path.

They exist only as a yardstick for `benchmarks/telegram_path.py`: a python-telegram-bot
`ConversationHandler` bot and an aiogram 3 FSM bot. Both send the same texts with the same inline
keyboards as the product does (the texts are read from the product's own locale and city files, so
the messages on the wire are the same size), keep every draft in memory only, and make up a
16-digit receipt code at submit.

This module holds only data shared by the two bots: texts and the button layouts.
"""

from __future__ import annotations

import secrets
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

_HANDLERS_DIR = Path(__file__).resolve().parents[2] / "handlers"

with (_HANDLERS_DIR / "locales" / "zh.toml").open("rb") as _handle:
    T: dict[str, str] = tomllib.load(_handle)
with (_HANDLERS_DIR / "default_config.toml").open("rb") as _handle:
    _CITY = tomllib.load(_handle)

CITY: str = _CITY["city_zh"]
DISTRICTS: dict[str, str] = {d["code"]: d["zh"] for d in _CITY["districts"]}
TZ = ZoneInfo(_CITY["timezone"])
MIN_DESCRIPTION, MAX_DESCRIPTION = 10, 3000

# (callback_data, label) rows, as the product lays them out
_DISTRICT_BUTTONS = [(f"district:{code}", name) for code, name in DISTRICTS.items()]
_DISTRICT_BUTTONS.append(("district:unsure", T["district_unsure"]))
DISTRICT_ROWS = [_DISTRICT_BUTTONS[i:i + 3] for i in range(0, len(_DISTRICT_BUTTONS), 3)]
_WHEN = [(f"when:{k}", T[f"when_{k}"]) for k in ("today", "yesterday", "week", "month", "unsure")]
WHEN_ROWS = [_WHEN[i:i + 2] for i in range(0, len(_WHEN), 2)]
EVIDENCE_ROWS = [[("evidence:done", T["evidence_skip"])]]
IDENTITY_ROWS = [[("identity:anonymous", T["identity_anonymous"])], [("identity:real", T["identity_real"])]]
SUMMARY_ROWS = [[("summary:submit", T["summary_submit"])], [("summary:edit", T["summary_edit"])],
                [("summary:cancel", T["summary_cancel"])]]
_MENU = [("menu:report", T["menu_report"]), ("menu:status", T["menu_status"]),
         ("menu:help", T["menu_help"]), ("menu:language", T["menu_language"])]
MENU_ROWS = [_MENU[0:2], _MENU[2:4]]

ASK_DISTRICT = T["ask_district"].format(city=CITY)
ASK_DESCRIPTION = T["ask_description"].format(minimum=MIN_DESCRIPTION, maximum=MAX_DESCRIPTION)
ASK_EVIDENCE = T["ask_evidence"].format(maximum=5, limit_mb=10)

_case_counter = 0


def occurred(key: str) -> str:
    label = T[f"when_{key}"]
    today = datetime.now(UTC).astimezone(TZ).date()
    if key == "today":
        return f"{today.isoformat()} ({label})"
    if key == "yesterday":
        return f"{(today - timedelta(days=1)).isoformat()} ({label})"
    return label


def summary(draft: dict[str, str]) -> str:
    identity = T["identity_anonymous"] if draft.get("anonymous", True) else (
        f"{draft.get('name', '')} {draft.get('phone', '')[:3]}****{draft.get('phone', '')[-4:]}")
    return T["summary"].format(district=DISTRICTS.get(draft.get("district", ""), T["district_unsure"]),
                               place=draft["place"], when=draft["occurred"], description=draft["description"],
                               evidence=0, identity=identity)


def submitted() -> str:
    """The confirmation with a made-up case number and receipt code (nothing is stored)."""
    global _case_counter
    _case_counter += 1
    code = f"{secrets.randbelow(10**16):016d}"
    case_number = f"QL-{datetime.now(TZ).year}-{_case_counter:06d}"
    return T["submitted"].format(case_number=case_number, code=" ".join(code[i:i + 4] for i in range(0, 16, 4)))
