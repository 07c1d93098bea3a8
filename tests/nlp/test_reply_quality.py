"""Reply quality: an answer that addresses the report scores higher, and the reasons say what is missing."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from nlp.reply_quality import Reason, key_phrases, score_reply, working_days_between

REPORT = ("我为了把社保关系从外地转到本区，去区政务服务中心的社保窗口跑了四次，每次窗口工作人员都说材料不全，"
          "却不一次性告知到底缺什么材料。第四次去的时候工作人员直接说系统维护让我下周再来。请纪委监督一下。")
ON_TOPIC = ("您好！关于您反映的区政务服务中心社保窗口办理社保关系转移跑了四次仍未办结的问题，经查，窗口工作人员未落实"
            "一次性告知制度，情况属实。根据《社会保险经办服务规范》和本区首问负责制的规定，我局已责令该窗口整改，"
            "对相关工作人员进行了诫勉谈话，并安排专人为您办理社保关系转移，目前已办结。如有疑问，请拨打联系电话"
            "0731-84561234咨询。")
OFF_TOPIC = ("您好！您反映的滨江路道路破损问题已收悉。我们将协调有关部门对该路段进行维修，感谢您对我们工作的理解和"
             "支持。")
NO_BASIS_NO_CONTACT = ("关于您反映的社保窗口跑了四次的问题，经查，窗口工作人员未一次性告知所需材料，我局已责令整改，"
                       "并为您办结了社保关系转移。")


def test_an_off_topic_answer_scores_lower_than_an_on_topic_one() -> None:
    on_topic = score_reply(REPORT, ON_TOPIC)
    off_topic = score_reply(REPORT, OFF_TOPIC)
    assert on_topic.relevance > off_topic.relevance
    assert on_topic.score > off_topic.score
    missing = [reason for reason in off_topic.reasons if reason.code == "missing_phrases"]
    assert len(missing) == 1
    assert "社保窗口" in missing[0].params["phrases"]
    assert "四次" in missing[0].params["phrases"]
    assert not any(reason.code == "missing_phrases" and "社保窗口" in reason.params["phrases"]
                   for reason in on_topic.reasons)


def test_key_phrases_join_adjacent_key_words_and_keep_quantities() -> None:
    phrases = [phrase for phrase, _ in key_phrases(REPORT)]
    assert "社保窗口" in phrases
    assert "四次" in phrases
    weights = [weight for _, weight in key_phrases(REPORT)]
    assert weights == sorted(weights, reverse=True)


def test_a_reply_without_legal_basis_or_contact_gets_those_reasons() -> None:
    lacking = score_reply(REPORT, NO_BASIS_NO_CONTACT)
    codes = {reason.code for reason in lacking.reasons}
    assert {"no_basis", "no_contact"} <= codes
    assert "no_findings" not in codes
    assert "no_action" not in codes
    assert lacking.completeness == pytest.approx(0.6)
    complete = score_reply(REPORT, ON_TOPIC)
    assert complete.completeness == pytest.approx(1.0)
    assert {"no_basis", "no_contact", "no_findings", "no_action"}.isdisjoint(r.code for r in complete.reasons)


def test_timeliness_falls_when_the_reply_is_late() -> None:
    received = datetime(2024, 3, 4, 10, 0)  # a Monday
    on_time = score_reply(REPORT, ON_TOPIC, received=received, replied=datetime(2024, 3, 15, 16, 0))
    late = score_reply(REPORT, ON_TOPIC, received=received, replied=datetime(2024, 4, 12, 9, 0))
    later = score_reply(REPORT, ON_TOPIC, received=received, replied=datetime(2024, 4, 26, 9, 0))
    assert on_time.timeliness == 1.0
    assert on_time.working_days == 9
    assert late.working_days == 29
    assert late.timeliness == pytest.approx(1 - 14 / 15)
    assert later.timeliness == 0.0
    assert on_time.score > late.score
    assert Reason("late", {"days": 29, "deadline": 15}) in late.reasons


def test_the_queue_deadline_and_holidays_count() -> None:
    received = datetime(2024, 9, 27, 10, 0)  # a Friday before a week of holidays
    holidays = {date(2024, 10, day) for day in range(1, 8)}
    replied = datetime(2024, 10, 11, 10, 0)
    calendar = lambda day: day.weekday() < 5 and day not in holidays  # noqa: E731
    assert working_days_between(received.date(), replied.date()) == 10
    assert working_days_between(received.date(), replied.date(), calendar) == 5
    result = score_reply(REPORT, ON_TOPIC, received=received, replied=replied, deadline_working_days=5,
                         is_working_day=calendar)
    assert result.timeliness == 1.0
    strict = score_reply(REPORT, ON_TOPIC, received=received, replied=replied, deadline_working_days=3,
                         is_working_day=calendar)
    assert strict.timeliness == pytest.approx(1 - 2 / 3)


def test_without_times_timeliness_is_unknown_and_the_score_uses_the_rest() -> None:
    result = score_reply(REPORT, ON_TOPIC)
    assert result.timeliness is None
    expected = (0.35 * result.relevance + 0.3 * result.completeness + 0.15 * result.clarity) / 0.8
    assert result.score == pytest.approx(expected)
    assert 0.0 <= result.score <= 1.0


def test_a_short_courtesy_reply_is_unclear() -> None:
    result = score_reply(REPORT, "您好，来信收悉，感谢支持。")
    codes = {reason.code for reason in result.reasons}
    assert {"too_short", "boilerplate"} <= codes
    assert result.clarity < score_reply(REPORT, ON_TOPIC).clarity


def test_reasons_render_in_chinese_and_english() -> None:
    reason = Reason("missing_phrases", {"phrases": ["社保窗口", "四次"]})
    assert reason.text("zh") == "答复未提及报告中的：社保窗口、四次"
    assert reason.text("en") == "does not mention the report's 社保窗口, 四次"
    result = score_reply(REPORT, OFF_TOPIC)
    assert len(result.reason_texts("zh")) == len(result.reason_texts("en")) == len(result.reasons)
    assert result.to_json()["reasons"] == result.reason_texts("zh")


def test_a_reply_dated_before_the_report_is_refused() -> None:
    with pytest.raises(ValueError, match="before"):
        score_reply(REPORT, ON_TOPIC, received=datetime(2024, 3, 4), replied=datetime(2024, 3, 1))


ENGLISH_REPORT = ("The clerk at window 3 of the Yuelu district service centre asked me for 500 yuan to speed up my "
                  "business licence and refused to process it when I said no.")


def test_an_answer_to_an_english_report_is_judged_on_its_words_too() -> None:
    """A report without Chinese key phrases was taken as answered by anything: relevance 1.0 for "x"."""
    unrelated = score_reply(ENGLISH_REPORT, "The weather will be sunny tomorrow and the football match starts at 8.")
    related = score_reply(ENGLISH_REPORT, "We investigated the clerk at window 3 who asked for 500 yuan; the business "
                                          "licence has been processed and the clerk was disciplined.")
    assert unrelated.relevance < 0.3 and "off_topic" in {reason.code for reason in unrelated.reasons}
    assert related.relevance > 0.5 > unrelated.relevance


def test_a_greeting_before_the_findings_is_not_counted_as_courtesy_and_discipline_is_an_action() -> None:
    """Seen on a ticket: "您好，经核查，…" was counted whole as courtesy (54 %), and 批评教育 / 调离 were not
    actions."""
    reply = ("您好，经核查，3号窗口工作人员确有工作时间玩手机、要求提供清单外材料的情况。"
             "已对该工作人员进行批评教育并调离窗口岗位，营业执照办理材料以公示清单为准。感谢您的监督。")
    codes = {reason.code for reason in score_reply(REPORT, reply).reasons}
    assert "boilerplate" not in codes and "no_action" not in codes
    thanks_only = score_reply(REPORT, "您好，来信收悉，感谢您对我们工作的理解和支持。")
    assert "boilerplate" in {reason.code for reason in thanks_only.reasons}


COMPLETENESS_CODES = {"no_findings", "no_action", "no_basis", "no_contact"}


def test_please_dial_12345_is_a_contact() -> None:
    """请拨打12345 — the city hotline, dialled — says whom to contact as much as 联系电话 does."""
    dial = score_reply(REPORT, NO_BASIS_NO_CONTACT + "根据《社会保险经办服务规范》的规定办理。如有疑问请拨打12345。")
    assert COMPLETENESS_CODES.isdisjoint(reason.code for reason in dial.reasons)
    assert dial.completeness == pytest.approx(1.0)


@pytest.mark.parametrize("contact", ["如有疑问请致电0731-12345678。", "欢迎垂询：0731-84561234。"])
def test_please_call_with_a_number_is_a_contact(contact: str) -> None:
    """请致电0731-… (please call …) gives whom to contact: the check once said 未提供联系方式 of such an answer."""
    called = score_reply(REPORT, NO_BASIS_NO_CONTACT + "根据《社会保险经办服务规范》的规定办理。" + contact)
    assert "no_contact" not in {reason.code for reason in called.reasons}
    assert called.completeness == pytest.approx(1.0)


def test_an_english_answer_is_as_complete_as_its_findings_action_basis_and_contact() -> None:
    complete = score_reply(ENGLISH_REPORT, (
        "We investigated your report and found that the clerk at window 3 asked for 500 yuan. Under Article 12 of "
        "the Regulations on Administrative Licensing, the clerk has been disciplined and ordered to refund the "
        "money, and your business licence has been issued. If you have questions, please call 0731-84561234."))
    assert COMPLETENESS_CODES.isdisjoint(reason.code for reason in complete.reasons)
    assert complete.completeness == pytest.approx(1.0)
    lacking = score_reply(ENGLISH_REPORT, "After verification, the clerk at window 3 was warned and the fee was "
                                          "returned to you.")
    assert {reason.code for reason in lacking.reasons} & COMPLETENESS_CODES == {"no_basis", "no_contact"}
    assert lacking.completeness == pytest.approx(0.6)
