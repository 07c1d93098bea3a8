"""A city's configuration file: what another city writes, and the one line the operator reads when it is
wrong (the default file and the routing targets: tests/bot/test_config.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from handlers.city import DEFAULT_CITY_CONFIG, CityConfig, ConfigError, load_city_config

DEFAULT = DEFAULT_CITY_CONFIG.read_text(encoding="utf-8")


def _load(tmp_path: Path, text: str) -> CityConfig:
    path = tmp_path / "city.toml"
    path.write_text(text, encoding="utf-8")
    return load_city_config(path)


def _refusal(tmp_path: Path, text: str) -> tuple[Path, str]:
    """The file `text` written and loaded: its path, and the operator's one line that refuses it."""
    with pytest.raises(ConfigError) as problem:
        _load(tmp_path, text)
    return tmp_path / "city.toml", str(problem.value)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as problem:
        _load(tmp_path, text)
    return str(problem.value).split(": ", 1)[1]


def test_another_city_with_its_own_districts_queues_and_texts(tmp_path: Path) -> None:
    text = DEFAULT.replace('city_zh = "长沙市"', 'city_zh = "株洲市"').replace('city_en = "Changsha"',
                                                                           'city_en = "Zhuzhou"')
    text = text.replace('case_number_prefix = "QL"', 'case_number_prefix = "ZZ"')
    text += '\n[texts.zh]\nreport_intro = "开始举报（株洲）。"\n[texts.en]\nreport_intro = "Report (Zhuzhou)."\n'
    city = _load(tmp_path, text)
    assert (city.city_zh, city.city_en, city.case_number_prefix, city.texts["en"]["report_intro"]) == (
        "株洲市", "Zhuzhou", "ZZ", "Report (Zhuzhou).")


def test_districts_and_queues_are_found_by_code() -> None:
    city = load_city_config(None)
    kaifu = city.district("kaifu")
    triage = city.queue("triage")
    assert kaifu is not None and (kaifu.zh, kaifu.en) == ("开福区", "Kaifu")
    assert triage is not None and triage.en == "Manual triage"
    assert (city.district("atlantis"), city.district(None), city.queue("mars")) == (None, None, None)


@pytest.mark.parametrize(("change", "message"), [
    (('{ code = "kaifu", zh = "开福区", en = "Kaifu" },', '{ code = "yuelu", zh = "开福区", en = "Kaifu" },'),
     "districts: district codes must be unique"),
    (('{ code = "kaifu", zh = "开福区", en = "Kaifu" },', '{ code = "Kaifu", zh = "开福区", en = "Kaifu" },'),
     "districts.3.code: String should match pattern '^[a-z][a-z0-9_]{0,39}$'"),
    (('triage_queue = "triage"', 'triage_queue = "sorting"'),
     "routing.triage_queue: 'sorting' is not a configured queue"),
    (('case_number_prefix = "QL"', 'case_number_prefix = "ql-"'),
     "case_number_prefix: String should match pattern '^[A-Z]{1,8}$'"),
    (('confidence_threshold = 0.37', 'confidence_threshold = 1.5'),
     "routing.confidence_threshold: Input should be less than or equal to 1"),
    (('default_locale = "zh"', 'default_locale = "fr"'), "default_locale: Input should be 'zh' or 'en'"),
])
def test_a_mistake_is_one_line_naming_where_it_is(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in DEFAULT
    assert _error(tmp_path, DEFAULT.replace(old, new)) == message


def test_a_city_needs_at_least_one_district(tmp_path: Path) -> None:
    start = DEFAULT.index("districts = [")
    end = DEFAULT.index("]", DEFAULT.index("ningxiang")) + 1
    without = DEFAULT[:start] + "districts = []" + DEFAULT[end:]
    text = without.replace('village_affairs = "@district"', 'village_affairs = "triage"')
    assert _error(tmp_path, text) == "districts: at least one district is required"


def test_a_stored_time_is_told_as_the_citys_calendar_day() -> None:
    changsha = load_city_config(None)
    chicago = changsha.model_copy(update={"timezone": "America/Chicago"})
    assert changsha.local_day("2026-03-10T16:30:00+00:00") == "2026-03-11"  # 00:30 on the 11th in Changsha
    assert chicago.local_day("2026-03-10T04:59:59+00:00") == "2026-03-09"  # 23:59:59 on the 9th in Chicago
    assert changsha.local_day(datetime(2026, 3, 10, 16, 30)) == "2026-03-11"  # a naive time is UTC
    assert changsha.local_day("") == "" and changsha.local_day("soon, maybe") == "soon, mayb"


def test_a_city_file_an_operator_got_wrong_is_refused_in_one_line_before_serving(tmp_path: Path) -> None:
    """Seen as an operator: a misspelt time zone passed `check` and `serve`, then every report failed with a 500;
    a file saved as GBK, or a directory given as the file, printed a traceback; typos were silently ignored."""
    assert _error(tmp_path, DEFAULT.replace('timezone = "Asia/Shanghai"', 'timezone = "Asia/Shanghia"')) == (
        "timezone: unknown time zone 'Asia/Shanghia' (an IANA name such as Asia/Shanghai)")
    assert "max_attachmnets: Extra inputs are not permitted" in _error(
        tmp_path, DEFAULT.replace("[limits]\n", "[limits]\nmax_attachmnets = 5\n"))
    assert "otherr" in _error(tmp_path, DEFAULT.replace("[routing.labels]\n", '[routing.labels]\notherr = "triage"\n'))
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes(DEFAULT.encode("gbk"))
    with pytest.raises(ConfigError) as not_utf8:
        load_city_config(gbk)
    assert "is not UTF-8" in str(not_utf8.value)
    with pytest.raises(ConfigError) as directory:
        load_city_config(tmp_path)
    assert "cannot be read" in str(directory.value)


def test_a_text_override_the_dialog_could_not_fill_is_refused(tmp_path: Path) -> None:
    """Seen as another city's operator: `welcome = "…{cty}…"` passed `check` and `serve`, then every resident's
    greeting answered 500 (KeyError 'cty'); a misspelt key (`welcom`) crashed `serve` with a traceback."""
    assert _error(tmp_path, DEFAULT + '\n[texts.zh]\nwelcome = "您好！这里是{cty}清廉监督举报平台。"\n') == (
        "texts.zh.welcome: unknown placeholder {cty}; this text may use {city}")
    assert _error(tmp_path, DEFAULT + '\n[texts.zh]\nwelcome = "您好！{city"\n') == (
        "texts.zh.welcome: a brace is not closed (write {{ and }} for a brace itself)")
    assert _error(tmp_path, DEFAULT + '\n[texts.zh]\nwelcom = "您好"\n') == (
        "texts.zh.welcom: unknown text; did you mean welcome?")
    assert _error(tmp_path, DEFAULT + '\n[texts.fr]\nwelcome = "Bonjour"\n') == (
        "texts.fr: unknown language; texts are in zh or en")
    # a text may leave a placeholder out, and may use its own placeholders
    city = _load(tmp_path, DEFAULT + '\n[texts.zh]\nwelcome = "您好！欢迎使用举报平台。"\n'
                                     'rated = "谢谢（{rating}星）"\n')
    assert city.texts["zh"]["welcome"] == "您好！欢迎使用举报平台。"


def test_every_label_is_routed_and_names_are_unique_and_not_blank(tmp_path: Path) -> None:
    """Seen as another city's operator: a label left out of [routing.labels] passed, and its reports all went to
    triage; two queues with one code, two districts with one name and a blank district name were accepted."""
    assert _error(tmp_path, DEFAULT.replace('medical = "clean_medical"\n', "")) == (
        "routing.labels: does not route medical: route every label to a queue, "
        "to '@district' or to the triage queue 'triage'")
    queue = '    { code = "district_ningxiang", zh = "宁乡市纪委监委", en = "Ningxiang discipline commission" },\n'
    assert _error(tmp_path, DEFAULT.replace(queue, queue + queue)) == (
        "queues: queue codes must be unique: district_ningxiang is given twice")
    kaifu = '{ code = "kaifu", zh = "开福区", en = "Kaifu" },'
    assert _error(tmp_path, DEFAULT.replace(kaifu, kaifu + '{ code = "kaifu2", zh = "开福区", en = "Kaifu 2" },')) == (
        "districts: district names must be unique: 开福区 is given twice")
    assert _error(tmp_path, DEFAULT.replace(kaifu, '{ code = "kaifu", zh = " ", en = "Kaifu" },')) == (
        "districts.3.zh: a name may not be blank")


ZHUZHOU_FILE = Path(__file__).resolve().parent.parent / "data" / "zhuzhou.toml"


@pytest.mark.parametrize(("change", "where", "message"), [
    (('education = "zz_schools"', 'education = "zz_school"'), "routing.labels.education",
     "routes to unknown queue 'zz_school'"),
    (('medical = "zz_health"', 'medcal = "zz_health"'), "routing.labels.medcal",
     "unknown label; the labels are slow_service, lazy_procrastination, formalism, project_irregularity, "
     "village_affairs, medical, education, bribery_gifts, other"),
    (('triage_queue = "zz_sort"', 'triage_queue = "zz_sorting"'), "routing.triage_queue",
     "'zz_sorting' is not a configured queue"),
    (('village_affairs = "@district"', 'village_affairs = "@district"\nvillage_affairs_x = "zz_sort"'),
     "routing.labels.village_affairs_x", "unknown label; the labels are slow_service, lazy_procrastination, "
     "formalism, project_irregularity, village_affairs, medical, education, bribery_gifts, other"),
    (('    { code = "area_yanling", zh = "炎陵县监察组", en = "Yanling County inspectors" },\n', ''),
     "routing.labels.village_affairs", "routes by district but queues ['area_yanling'] are missing"),
    (('{ code = "lukou", zh = "渌口区", en = "Lukou" },', '{ code = "lukou", zh = "", en = "Lukou" },'),
     "districts.4.zh", "a name may not be blank"),
])
def test_a_mistake_in_another_citys_file_names_the_key_and_its_line(
        tmp_path: Path, change: tuple[str, str], where: str, message: str) -> None:
    """Seen as Zhuzhou's operator at `qinglian check` and `serve`: a queue routed to that does not exist, or a
    district without its queue, was reported at "(top level)", every reason began with pydantic's "Value error,",
    and no reason said on which line of the file to look."""
    old, new = change
    text = ZHUZHOU_FILE.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new)
    # the line of the key: the label's, the item's of the list
    marker = {"4": '"lukou"'}.get(where.rsplit(".", 2)[-2], f"{where.rsplit('.', 1)[-1]} =")
    line = next(number for number, content in enumerate(text.splitlines(), 1) if content.startswith(marker) or
                (marker.startswith('"') and marker in content))
    path, refused = _refusal(tmp_path, text)
    assert refused == f"city configuration {path}, line {line}: {where}: {message}"


def test_an_empty_district_list_names_its_line(tmp_path: Path) -> None:
    text = ZHUZHOU_FILE.read_text(encoding="utf-8")
    start = text.index("districts = [")
    text = text[:start] + "districts = []" + text[text.index("]", text.index("yanling")) + 1:]
    path, refused = _refusal(tmp_path, text)
    line = text.splitlines().index("districts = []") + 1
    assert refused == f"city configuration {path}, line {line}: districts: at least one district is required"


def test_a_mistake_in_a_list_not_written_one_item_a_line_names_the_lists_line(tmp_path: Path) -> None:
    """Two districts on one line: the line of the list, not the line of whichever item happens to be counted."""
    text = ZHUZHOU_FILE.read_text(encoding="utf-8").replace(
        '{ code = "lusong", zh = "芦淞区", en = "Lusong" },\n    { code = "shifeng", zh = "石峰区", en = "Shifeng" },',
        '{ code = "lusong", zh = "芦淞区", en = "Lusong" }, { code = "shifeng", zh = " ", en = "Shifeng" },')
    path, refused = _refusal(tmp_path, text)
    line = text.splitlines().index("districts = [") + 1
    assert refused == f"city configuration {path}, line {line}: districts.2.zh: a name may not be blank"
