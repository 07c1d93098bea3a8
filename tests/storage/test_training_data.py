"""The staff-labelled reports: the "needs labelling" list, the counts the next training run adds, and the
examples it trains on, on SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from storage import staff_actions, training_data
from storage.models import Case, StaffRole, StaffUser
from tests.factories import file_case

KEY = b"k" * 32


async def labelled_case(session: Any, staff: StaffUser, text: str, label: str, *, predicted: str | None,
                        confidence: float | None, queue: str = "triage") -> Case:
    case, _ = await file_case(
        session, secret_key=KEY, case_number_prefix="QL", year=2026, channel="web", reporter_ref="w-1",
        locale="zh", district="yuelu", place="某单位", occurred="昨天", description=text, anonymous=True,
        reporter_name=None, reporter_phone=None, attachment_ids=[], queue=queue, label=predicted,
        confidence=confidence, top=[], model_version=None)
    if label == predicted:
        await staff_actions.confirm_label(session, case, actor=staff)
    elif label:
        await staff_actions.correct_label(session, case, label, actor=staff, queue=case.queue, accept_due_at=None,
                                          resolve_due_at=None)
    return case


async def test_needs_labelling_lists_unsure_then_corrected_cases(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="admin", display_name="管理员",
                                                 role=StaffRole.ADMIN, password_hash="not-a-hash")
        sure = await labelled_case(session, staff, "窗口服务态度恶劣，工作人员玩手机", "", predicted="slow_service",
                                   confidence=0.95, queue="clean_hall")
        low = await labelled_case(session, staff, "不知道该找谁反映的问题，情况比较复杂", "", predicted="other",
                                  confidence=0.2)
        unclassified = await labelled_case(session, staff, "分类器没有给出结果的举报内容" * 10, "", predicted=None,
                                           confidence=None)
        corrected = await labelled_case(session, staff, "医院收红包", "medical", predicted="slow_service",
                                        confidence=0.7, queue="clean_hall")
        confirmed_low = await labelled_case(session, staff, "村干部优亲厚友分配低保", "village_affairs",
                                            predicted="village_affairs", confidence=0.3)
    async with sessionmaker() as session:
        items, total = await training_data.needs_labelling(session, threshold=0.5)
        hall, hall_total = await training_data.needs_labelling(session, threshold=0.5, queues={"clean_hall"})
        page, _ = await training_data.needs_labelling(session, threshold=0.5, limit=1, offset=1)
        counts = await training_data.staff_label_counts(session)
    assert total == 3 and hall_total == 1
    assert [(item.case_number, item.reason) for item in items] == [
        (unclassified.case_number, "unclassified"), (low.case_number, "low_confidence"),
        (corrected.case_number, "corrected")]
    assert [item.case_number for item in hall] == [corrected.case_number]
    assert [item.case_number for item in page] == [low.case_number]
    assert items[0].excerpt == ("分类器没有给出结果的举报内容" * 10)[:training_data.EXCERPT_CHARS]
    assert (items[2].label, items[2].predicted_label, items[2].confidence) == ("medical", "slow_service", 0.7)
    assert sure.case_number not in {item.case_number for item in items}
    assert confirmed_low.case_number not in {item.case_number for item in items}
    assert counts == {"confirmed": 1, "corrected": 1}


async def test_training_examples_are_the_labels_staff_confirmed_or_corrected(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="admin", display_name="管理员",
                                                 role=StaffRole.ADMIN, password_hash="not-a-hash")
        await labelled_case(session, staff, "窗口工作人员上班时间打游戏", "slow_service", predicted="slow_service",
                            confidence=0.9)
        await labelled_case(session, staff, "卫生院药房多收医保费用", "medical", predicted="other", confidence=0.4)
        await labelled_case(session, staff, "模型认为是工程问题但没人看过", "", predicted="project_irregularity",
                            confidence=0.8)
    async with sessionmaker() as session:
        examples = await training_data.training_examples(session)
    assert sorted(examples) == [("卫生院药房多收医保费用", "medical"), ("窗口工作人员上班时间打游戏", "slow_service")]
