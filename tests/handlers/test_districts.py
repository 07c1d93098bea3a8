"""Which district a resident's words name: the district question's typed answers and the complaint's mention."""

from __future__ import annotations

import pytest

from handlers.city import load_city_config
from handlers.districts import named_district

CITY = load_city_config(None)


@pytest.mark.parametrize(("text", "code"), [
    ("岳麓区", "yuelu"),
    ("在岳麓区那边的政务中心", "yuelu"),
    ("岳麓", "yuelu"),  # without its suffix
    ("嶽麓區", "yuelu"),  # traditional characters
    ("the Yuelu District service centre", "yuelu"),
    ("长沙县星沙街道", "changsha_county"),  # the city's name inside a district's: the full name decides
    ("从岳麓区到天心区办事", None),  # two districts: the resident is asked
    ("长沙市政务服务中心", None),  # the city, no district
])
def test_the_one_district_a_text_names(text: str, code: str | None) -> None:
    assert named_district(CITY, text) == code


def test_in_a_complaint_only_a_full_name_names_a_district() -> None:
    """Answering the district question, "芙蓉" is 芙蓉区; in a complaint, "芙蓉路" is a road, offered as no district."""
    assert named_district(CITY, "芙蓉") == "furong"
    assert named_district(CITY, "芙蓉路上的药店多收钱", short_forms=False) is None
    assert named_district(CITY, "芙蓉区芙蓉路上的药店多收钱", short_forms=False) == "furong"
