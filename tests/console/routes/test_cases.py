"""The overview and the ticket lists: who sees which queues, filters and pages."""

from __future__ import annotations

import html
import re

import httpx
from sqlalchemy import select

from console.routes import common
from storage import actions, staff_actions
from storage.models import Case, CaseStatus, StaffRole, TraceKind
from tests.console.conftest import ACTIONS, JPEG, OTHER_QUEUE, ConsoleHarness, location


async def test_a_reviewer_sees_only_their_queues(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    mine = await console.case("clean_hall")
    other = await console.case(OTHER_QUEUE, label="formalism", attachments=[("x.jpg", "image/jpeg", JPEG)])
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        listing = (await client.get("/console/cases")).text
        assert mine in listing and other not in listing
        assert other not in (await client.get(f"/console/cases?queue={OTHER_QUEUE}")).text
        assert (await client.get(f"/console/queue/{OTHER_QUEUE}")).status_code == 404
        assert (await client.get(f"/console/case/{other}")).status_code == 404
        detail = await console.get_case(other)
        async with console.database.read_sessionmaker() as session:
            from storage import queries

            attachment_id = (await queries.case_by_number(session, other)).attachments[0].id  # type: ignore[union-attr]
        assert (await client.get(f"/console/case/{other}/evidence/{attachment_id}")).status_code == 404
        assert (await client.get(f"/console/case/{mine}/evidence/{attachment_id}")).status_code == 404
        for action, data in ACTIONS:
            response = await client.post(f"/console/case/{other}/{action}", data={"csrf": csrf, **data})
            # revealing identities is not a reviewer's right anywhere (config: supervisor, admin)
            assert response.status_code == (403 if action == "reveal" else 404), (action, response.text[:300])
        assert (await client.get("/console/overdue")).status_code == 200
        for admin_page in ("/console/staff", "/console/audit", "/console/models", "/console/stats"):
            assert (await client.get(admin_page)).status_code == 403, admin_page
    after = await console.get_case(other)
    assert (after.status, after.label, after.queue, after.assigned_to_id) == (
        detail.status, detail.label, detail.queue, detail.assigned_to_id)
    assert [e.kind for e in await console.trace(other)] == [TraceKind.RECEIVED, TraceKind.ROUTED]
    assert await console.audit(case_number=other) == []


async def test_a_supervisor_sees_every_queue_and_assigns_but_not_admin_pages(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.user("rev", StaffRole.REVIEWER, [OTHER_QUEUE])
    await console.user("outsider", StaffRole.REVIEWER, ["clean_hall"])
    other = await console.case(OTHER_QUEUE, label="formalism")
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        assert other in (await client.get("/console/cases")).text
        page = await client.get(f"/console/case/{other}")
        assert page.status_code == 200
        assert '<option value="rev"' in page.text and '<option value="outsider"' not in page.text
        assigned = await client.post(f"/console/case/{other}/assign", data={"csrf": csrf, "username": "rev"})
        assert location(assigned).startswith(f"/console/case/{other}")
        assert (await console.get_case(other)).assigned_to_id == (await console.staff("rev")).id
        assert [e.detail for e in await console.audit("case.assign")] == [{"to": "rev"}]
        assert (await client.get("/console/stats")).status_code == 200
        for admin_page in ("/console/staff", "/console/audit", "/console/models"):
            assert (await client.get(admin_page)).status_code == 403, admin_page


async def _numbers(client: httpx.AsyncClient, url: str) -> list[str]:
    """The case numbers a list page shows, in order."""
    response = await client.get(url)
    assert response.status_code == 200, response.text[:300]
    return re.findall(r'<a href="/console/case/(QL-[0-9-]+)">', response.text)


async def test_lists_filter(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    low = await console.case("triage", label="other", confidence=0.31, description="不知道该找谁反映的问题情况")
    late = await console.case("clean_hall", overdue=True)
    medical = await console.case("clean_medical", label="medical", district="yuelu",
                                 description="医院收红包的问题，医生收受红包")
    async with console.client() as client:
        await console.login(client, "sup")

        async def numbers(url: str) -> list[str]:
            return await _numbers(client, url)

        assert await numbers("/console/cases") == [medical, late, low]
        assert await numbers("/console/cases?label=medical") == [medical]
        assert await numbers("/console/cases?district=yuelu") == [medical]
        assert await numbers("/console/cases?conf_max=50") == [low]
        assert await numbers("/console/cases?conf_min=50&conf_max=100") == [medical, late]
        assert await numbers("/console/cases?q=红包") == [medical]
        assert await numbers("/console/cases?overdue=1") == [late]
        assert await numbers("/console/overdue") == [late]
        assert await numbers("/console/labelling") == [low]
        assert await numbers("/console/queue/clean_medical") == [medical]
        assert await numbers("/console/cases?status=accepted") == []
        assert await numbers("/console/cases?from=2000-01-01&to=2000-01-02") == []
        overview = (await client.get("/console")).text
        assert 'href="/console/queue/clean_medical?status=routed">1<' in overview
        assert (await client.get("/console/cases?conf_min=abc")).status_code == 422
        assert (await client.get("/console/cases?from=yesterday")).status_code == 422


async def test_the_confidence_filter_speaks_the_percentages_the_list_shows_and_includes_its_top(
        console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    certain = await console.case(confidence=1.0)
    shown_87 = await console.case(confidence=0.8666)
    shown_80 = await console.case(confidence=0.7951)
    low = await console.case("triage", label="other", confidence=0.31)
    async with console.client() as client:
        await console.login(client, "sup")

        async def numbers(url: str) -> list[str]:
            return await _numbers(client, url)

        page = (await client.get("/console/cases")).text
        assert ">87%<" in page and ">80%<" in page and ">100%<" in page
        form = re.findall(r'<input type="number" name="(conf_m..)" min="(\d+)" max="(\d+)"', page)
        assert form == [("conf_min", "0", "100"), ("conf_max", "0", "100")]
        assert "置信度 (%)" in html.unescape(page) or "置信度（%）" in html.unescape(page)
        # what a supervisor types is what the column shows: 80 means 80 %, and "up to 100 %" includes 100 %
        assert await numbers("/console/cases?conf_min=80&conf_max=100") == [shown_80, shown_87, certain]
        assert await numbers("/console/cases?conf_min=100") == [certain]
        assert await numbers("/console/cases?conf_min=87&conf_max=87") == [shown_87]
        assert await numbers("/console/cases?conf_max=86") == [low, shown_80]
        assert await numbers("/console/cases?conf_min=80%25") == [shown_80, shown_87, certain]
        # the form shows again what was typed, and the export links carry it as it was typed
        filtered = (await client.get("/console/cases?conf_min=80&conf_max=100")).text
        assert 'name="conf_min" min="0" max="100" step="1" value="80"' in filtered
        exported = re.search(r'href="(/console/export\.csv\?[^"]+)"', filtered)
        assert exported is not None
        csv_rows = (await client.get(html.unescape(exported.group(1)))).content.decode("utf-8-sig").splitlines()[1:]
        assert sorted(row.split(",")[0] for row in csv_rows) == sorted([shown_80, shown_87, certain])


async def test_a_long_list_is_paged_newest_first_and_a_filter_pages_too(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    oldest = await console.case("clean_hall")
    newer = [await console.case("clean_hall") for _ in range(common.PER_PAGE)]
    other = await console.case("triage", label="other", confidence=0.31)
    async with console.client() as client:
        await console.login(client, "sup")
        first_page = await _numbers(client, "/console/cases")
        assert first_page == [other, *reversed(newer)][:common.PER_PAGE]
        assert await _numbers(client, _older(await client.get("/console/cases"))) == [newer[0], oldest]
        assert await _numbers(client, "/console/cases?label=slow_service") == list(reversed(newer))
        labelled = await client.get("/console/cases?label=slow_service")
        assert await _numbers(client, _older(labelled)) == [oldest]  # the next page keeps the filter


def _older(page: httpx.Response) -> str:
    """The address of a list page's "older" link (keyset pagination)."""
    found = re.search(r'href="([^"]*after=[^"]+)" rel="next"', page.text)
    assert found is not None, "the list has no link to older cases"
    return html.unescape(found.group(1))


async def test_the_overviews_tiles_open_the_lists_they_count(console: ConsoleHarness) -> None:
    """"办理中" and "有新信息" on the overview opened every case; each tile now opens the cases it counts."""
    await console.user("sup", StaffRole.SUPERVISOR)
    new = await console.case("clean_hall")
    handled = await console.case("clean_hall")
    informed = await console.case("clean_hall")
    async with console.database.sessionmaker.begin() as session:
        for number in (handled, informed):
            case = await session.scalar(select(Case).where(Case.case_number == number))
            assert case is not None
            await actions.change_status(session, case, CaseStatus.ACCEPTED, actor="staff:1")
        case = await session.scalar(select(Case).where(Case.case_number == informed))
        assert case is not None
        await actions.add_follow_up(session, case, text="补充：当天是3号窗口，工号0327。")
    async with console.client() as client:
        await console.login(client, "sup")
        overview = (await client.get("/console")).text
        tiles = dict(re.findall(r'<a class="tile[^"]*" href="([^"]+)"[^>]*>\s*<b>(\d+)</b>', overview))
        assert tiles["/console/cases?handling=1"] == "2" and tiles["/console/cases?unread=1"] == "1"
        assert await _numbers(client, "/console/cases?handling=1") == [informed, handled]
        assert await _numbers(client, "/console/cases?unread=1") == [informed]
        assert await _numbers(client, "/console/cases?status=routed") == [new]


FILTER_FORM = re.compile(r'<form method="get" action="[^"]*" class="filters">(.*?)</form>', re.S)
OPTION = re.compile(r"<option[^>]*>([^<]*)</option>")


async def test_every_choice_of_the_case_lists_filters_has_its_english_name(console: ConsoleHarness) -> None:
    """Seen by an English-reading supervisor: the filters' 全部 and the labels and districts were Chinese only."""
    await console.user("boss", StaffRole.SUPERVISOR)
    async with console.client() as client:
        await console.login(client, "boss")
        page = await client.get("/console/cases")
    form = FILTER_FORM.search(page.text)
    assert page.status_code == 200 and form is not None
    choices = [html.unescape(text).strip() for text in OPTION.findall(form.group(1))]
    assert len(choices) > 20
    assert [choice for choice in choices if not re.search(r"[A-Za-z]", choice)] == []
    assert {"全部 all", "吃拿卡要与违规收送 Bribes, gifts and banquets"} <= set(choices)


async def test_assigned_to_me_counts_and_lists_the_open_cases_a_reviewer_still_has_to_work(
        console: ConsoleHarness) -> None:
    """The tile kept counting the reviewer's closed cases, so it only ever grew; now it is their open work, and
    opens exactly that list."""
    reviewer = await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    boss = await console.user("boss", StaffRole.SUPERVISOR)
    unassigned = await console.case("clean_hall")
    waiting = await console.case("clean_hall")
    closed = await console.case("clean_hall")
    async with console.database.sessionmaker.begin() as session:
        for number in (waiting, closed):
            case = await session.scalar(select(Case).where(Case.case_number == number))
            assert case is not None
            await staff_actions.assign_case(session, case, reviewer, actor=boss)
        case = await session.scalar(select(Case).where(Case.case_number == closed))
        assert case is not None
        await actions.change_status(session, case, CaseStatus.CLOSED, actor="staff:1", body="已办结，已答复举报人。")
    async with console.client() as client:
        await console.login(client, "rev")
        overview = (await client.get("/console")).text
        tiles = dict(re.findall(r'<a class="tile[^"]*" href="([^"]+)"[^>]*>\s*<b>(\d+)</b>', overview))
        assert tiles["/console/cases?mine=1&amp;open=1"] == "1", tiles
        assert await _numbers(client, "/console/cases?mine=1&open=1") == [waiting]
        assert await _numbers(client, "/console/cases?mine=1") == [closed, waiting]  # the box alone: all of theirs
        assert await _numbers(client, "/console/cases?open=1") == [waiting, unassigned]
        listed = (await client.get("/console/cases?mine=1&open=1")).text
        assert re.search(r'<input type="checkbox" name="open" value="1" checked>', listed)


async def test_a_supervisors_overview_is_every_queue_in_the_citys_order(console: ConsoleHarness) -> None:
    """A supervisor works every queue: the overview said "我的队列" and sorted the queues by their codes, mixing the
    city's supervision groups with its districts; it lists them as the city's configuration does."""
    await console.user("sup", StaffRole.SUPERVISOR)
    # a queue the city's configuration no longer lists, still assigned: after the configured ones, not left out
    await console.user("rev", StaffRole.REVIEWER, ["old_hall", "clean_hall"])
    configured = [queue.code for queue in console.settings.city.queues]
    async with console.client() as client:
        await console.login(client, "sup")
        overview = (await client.get("/console")).text
        assert re.findall(r'<h1><span class="bi">(\w+)<', overview) == ["全部队列"]
        assert re.findall(r'<td><a href="/console/queue/([a-z_]+)">', overview) == configured
        # and the list of all of them says so too (it said "我的队列 All my queues" under "全部队列" on the overview)
        listed = (await client.get("/console/cases")).text
        assert re.findall(r'<h1><span class="bi">(\w+)<span class="en">([\w ]+)<', listed) == [
            ("全部队列", "All queues")]
    async with console.client() as client:
        await console.login(client, "rev")
        overview = (await client.get("/console")).text
        assert re.findall(r'<h1><span class="bi">(\w+)<', overview) == ["我的队列"]
        assert re.findall(r'<td><a href="/console/queue/([a-z_]+)">', overview) == ["clean_hall", "old_hall"]
        listed = (await client.get("/console/cases")).text
        assert re.findall(r'<h1><span class="bi">(\w+)<span class="en">([\w ]+)<', listed) == [
            ("我的队列", "All my queues")]


BULK_ASSIGNEE = re.compile(r'<select name="username"[^>]*>(.*?)</select>', re.S)
ASSIGNEE = re.compile(r'<option value="([^"]*)"[^>]*>(.*?)</option>', re.S)


def bulk_assignees(page: str) -> dict[str, str]:
    """The bulk form's "assign to" choices: username → the option's text."""
    found = BULK_ASSIGNEE.search(page)
    assert found, "no assignee list on the page"
    return {value: html.unescape(text) for value, text in ASSIGNEE.findall(found.group(1)) if value}


async def test_the_bulk_assignees_are_the_colleagues_who_work_in_the_listed_cases_queues(
        console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.SUPERVISOR)
    await console.user("hall", StaffRole.REVIEWER, ["clean_hall"])
    await console.user("style", StaffRole.REVIEWER, [OTHER_QUEUE])
    await console.user("both", StaffRole.REVIEWER, ["clean_hall", OTHER_QUEUE])
    await console.case("clean_hall")
    async with console.client() as client:
        await console.login(client, "boss")
        # one queue's list: only who works in it (anyone else would be refused for every case)
        for address in ("/console/queue/clean_hall", "/console/cases?queue=clean_hall", "/console/cases"):
            offered = bulk_assignees((await client.get(address)).text)
            assert {"hall", "both", "boss"} <= set(offered), address
            assert "style" not in offered, address
        await console.case(OTHER_QUEUE, label="formalism")
        # cases of both queues listed: everyone of either queue, each with the queues they work in
        offered = bulk_assignees((await client.get("/console/cases")).text)
        assert {"hall", "style", "both", "boss"} <= set(offered)
        assert "清廉大厅监督组" in offered["hall"] and "党风政风监督室" not in offered["hall"]
        assert "党风政风监督室" in offered["style"] and "清廉大厅监督组" not in offered["style"]


OLD_FRACTION = re.compile(r'<p class="hint warn" id="old-fraction"[^>]*>(.*?)</p>', re.S)


async def test_an_old_bookmarks_fraction_in_the_confidence_filter_is_explained_with_a_link_in_percent(
        console: ConsoleHarness) -> None:
    """The filter was a fraction (0–1) before it took percentages: a bookmarked conf_max=0.5 meant "up to 50 %"
    and now means "up to 0.5 %" — an empty list without a word would pass for "no unsure cases"."""
    await console.user("sup", StaffRole.SUPERVISOR)
    unsure = await console.case("triage", label="other", confidence=0.31)
    async with console.client() as client:
        await console.login(client, "sup")
        page = (await client.get("/console/cases?conf_max=0.5&queue=triage")).text
        said = OLD_FRACTION.search(page)
        assert said is not None, "nothing says what 0.5 means"
        text = html.unescape(said.group(1))
        assert "0.5 %" in text and "50 %" in text
        link = re.search(r'href="([^"]+)"', said.group(1))
        assert link is not None
        fixed = html.unescape(link.group(1))
        assert "conf_max=50" in fixed and "queue=triage" in fixed
        assert unsure in (await client.get(fixed)).text
        for plain in ("conf_max=50", "conf_max=0", "conf_min=80", ""):
            assert OLD_FRACTION.search((await client.get(f"/console/cases?{plain}")).text) is None, plain


ACTIVE_FILTER = re.compile(r'<p class="hint" id="active-filter"[^>]*>(.*?)</p>', re.S)


def _words(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


async def test_a_filtered_list_says_its_filter_in_words_with_a_link_that_clears_it(console: ConsoleHarness) -> None:
    """A bookmarked list with an old confidence bound listed next to nothing; what it was filtered on was only the
    values left in the form's boxes. The list now says its filter in words, with a link to the list without it."""
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.case("triage", label="other", confidence=0.31)
    async with console.client() as client:
        await console.login(client, "sup")
        filtered = (await client.get("/console/cases?conf_max=0.5&queue=triage&overdue=1&after=")).text
        unfiltered = (await client.get("/console/cases")).text
    said = ACTIVE_FILTER.search(filtered)
    assert said is not None, "the list does not say its filter"
    assert _words(said.group(1)) == (
        "筛选条件 Filter : 队列：人工分拣 queue: Manual triage · 最高置信度：0.5 % max. confidence: 0.5 % · "
        "超期 overdue 清除筛选 Clear the filter")
    assert 'href="/console/cases"' in said.group(1)
    assert ACTIVE_FILTER.search(unfiltered) is None


async def test_an_export_whose_filter_matches_nothing_says_so_with_its_filter_instead_of_an_empty_file(
        console: ConsoleHarness) -> None:
    """A bookmarked export with conf_max=0.5 (a fraction, from before the filter took percentages) downloaded a file
    with nothing but its header, and nothing said why. Now the export says that no case matches, the filter in
    words, what the old bound means, and links to the export in percent and to the list; nothing is audited as
    exported."""
    await console.user("sup", StaffRole.SUPERVISOR)
    unsure = await console.case("triage", label="other", confidence=0.31)
    async with console.client() as client:
        await console.login(client, "sup")
        empty = await client.get("/console/export.csv?conf_max=0.5&queue=triage")
        assert (empty.status_code, "content-disposition" in empty.headers) == (404, False)
        page = html.unescape(empty.text)
        assert "没有符合筛选条件的案件，未生成导出文件" in page
        assert "no cases match the filter: no file was made" in page
        said = ACTIVE_FILTER.search(empty.text)
        assert said is not None and "最高置信度：0.5 %" in _words(said.group(1))
        hint = OLD_FRACTION.search(empty.text)
        assert hint is not None and "50 %" in html.unescape(hint.group(1))
        meant = re.search(r'href="([^"]+)"', hint.group(1))
        assert meant is not None and html.unescape(meant.group(1)) == "/console/export.csv?queue=triage&conf_max=50"
        assert 'href="/console/cases?queue=triage&amp;conf_max=0.5"' in empty.text  # the list of the same filter
        assert await console.audit("case.export") == []
        exported = await client.get(html.unescape(meant.group(1)))
    assert exported.status_code == 200 and unsure in exported.text


async def test_a_received_range_that_ends_before_it_starts_is_refused_in_the_list_and_the_export(
        console: ConsoleHarness) -> None:
    """Days swapped by mistake gave an empty list and an empty export without a word, which reads as "nothing
    was received"; the statistics page refuses the same mistake."""
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.case("clean_hall")
    async with console.client() as client:
        await console.login(client, "sup")
        for address in ("/console/cases", "/console/export.csv"):
            refused = await client.get(f"{address}?from=2026-12-01&to=2026-11-01")
            assert refused.status_code == 422, address
            said = html.unescape(refused.text)
            assert "2026-12-01" in said and "2026-11-01" in said
            assert "晚于" in said and "after" in said
