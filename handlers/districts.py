"""Which of the city's districts a resident's words name ("岳麓", "在岳麓区", "Yuelu district")."""

from __future__ import annotations

import re

from handlers.city import CityConfig
from nlp.tokenizer import normalise


def named_district(city: CityConfig, text: str, *, short_forms: bool = True) -> str | None:
    """The one district of the city a typed answer names: by its full name ("岳麓区"), its English name, or —
    with `short_forms`, where the text does not name the city itself, whose name the short forms may share
    ("长沙县") — its name without the 区/县/市 suffix ("岳麓"). None when it names none or several. A short form
    answers the district question; in a complaint it is as often a road's or a landmark's name ("芙蓉路")."""
    typed = normalise(text)  # lower case, one space, traditional characters as simplified ("嶽麓區" is 岳麓区)
    full = {d.code for d in city.districts
            if d.zh in typed or re.search(rf"\b{re.escape(d.en.casefold())}\b", typed)}
    if full:
        return full.pop() if len(full) == 1 else None
    if not short_forms or city.city_zh.removesuffix("市") in typed:
        return None
    short = {d.code for d in city.districts if len(d.zh) > 2 and d.zh[-1] in "区县市" and d.zh[:-1] in typed}
    return short.pop() if len(short) == 1 else None
