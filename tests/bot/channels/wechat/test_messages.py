"""WeChat's XML in and out: the callbacks WeChat posts (text, image, voice, the subscribe, unsubscribe, CLICK and
subscription pop-up events, kinds the dialog cannot use) parsed into fields and turned into the dialog's `Inbound`;
hostile or malformed XML refused with a 400 and its reason; the passive reply's XML, which a resident's text cannot
break out of; replies rendered as numbered text with the subscription link, and cut to WeChat's 2048 bytes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from bot.channels.wechat.messages import (
    CallbackRejected,
    cdata,
    parse_command,
    parse_xml,
    reads_english,
    render_message,
    render_replies,
    split_text,
    subscription_choices,
    text_reply_xml,
    to_inbound,
)
from handlers.texts import Texts
from handlers.types import Attachment, AttachmentKind, Choice, Inbound, Outbound

OPENID = "oQL_5d9pX2kT9aYw8bVcRmNqE4s"
ACCOUNT = "gh_7f083739789a"

# The callbacks as WeChat's documentation shows them, indented and on several lines.
TEXT = f"""<xml>
  <ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>
  <FromUserName><![CDATA[{OPENID}]]></FromUserName>
  <CreateTime>1348831860</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[  窗口人员玩手机
让群众排队两个小时  ]]></Content>
  <MsgId>1234567890123456</MsgId>
</xml>""".encode()
IMAGE = f"""<xml>
  <ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>
  <FromUserName><![CDATA[{OPENID}]]></FromUserName>
  <CreateTime>1348831861</CreateTime>
  <MsgType><![CDATA[image]]></MsgType>
  <PicUrl><![CDATA[http://mmbiz.qpic.cn/mmbiz_jpg/abc/0]]></PicUrl>
  <MediaId><![CDATA[K1aGdT3cL0w-media]]></MediaId>
  <MsgId>1234567890123457</MsgId>
</xml>""".encode()
VOICE = f"""<xml>
  <ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>
  <FromUserName><![CDATA[{OPENID}]]></FromUserName>
  <CreateTime>1357290913</CreateTime>
  <MsgType><![CDATA[voice]]></MsgType>
  <MediaId><![CDATA[voice_media_id]]></MediaId>
  <Format><![CDATA[amr]]></Format>
  <Recognition><![CDATA[我要举报]]></Recognition>
  <MsgId>1234567890123458</MsgId>
</xml>""".encode()


def _event(event: str, key: str | None = None, created: int = 1700000000) -> bytes:
    key_xml = "" if key is None else f"<EventKey><![CDATA[{key}]]></EventKey>"
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event>{key_xml}</xml>").encode()


FetchedWith = list[str]


def _recording_fetcher(asked: FetchedWith) -> Callable[[str], Callable[[], Awaitable[bytes]]]:
    def fetcher(media_id: str) -> Callable[[], Awaitable[bytes]]:
        asked.append(media_id)

        async def fetch() -> bytes:
            return b"\xff\xd8" + media_id.encode()

        return fetch

    return fetcher


def _inbound(document: bytes) -> Inbound | None:
    return to_inbound(parse_xml(document), _recording_fetcher([]))


# --- parsing what WeChat posts ------------------------------------------------------------------


def test_a_text_message_keeps_its_content_exactly_and_is_keyed_by_its_msgid() -> None:
    fields = parse_xml(TEXT)
    assert fields == {"ToUserName": ACCOUNT, "FromUserName": OPENID, "CreateTime": "1348831860", "MsgType": "text",
                      "Content": "  窗口人员玩手机\n让群众排队两个小时  ", "MsgId": "1234567890123456"}
    assert to_inbound(fields, _recording_fetcher([])) == Inbound(
        "wechat", OPENID, text="  窗口人员玩手机\n让群众排队两个小时  ", update_key="1234567890123456")


def test_a_sticker_which_wechat_posts_as_a_placeholder_text_is_a_sticker_not_words_of_the_resident() -> None:
    """WeChat hands an official account a custom sticker as the text 【收到不支持的消息类型，暂无法显示】; taken as
    text it became a report's description or its time."""
    for placeholder in ("【收到不支持的消息类型，暂无法显示】", " [收到不支持的消息类型，暂无法显示] "):
        fields = {**parse_xml(TEXT), "Content": placeholder}
        assert to_inbound(fields, _recording_fetcher([])) == Inbound(
            "wechat", OPENID, attachment=Attachment("sticker"), update_key="1234567890123456")


async def test_an_image_becomes_a_photo_downloaded_by_its_media_id_only_when_fetched() -> None:
    asked: FetchedWith = []
    fields = parse_xml(IMAGE)
    assert (fields["PicUrl"], fields["MediaId"]) == ("http://mmbiz.qpic.cn/mmbiz_jpg/abc/0", "K1aGdT3cL0w-media")
    inbound = to_inbound(fields, _recording_fetcher(asked))
    assert inbound is not None and inbound.attachment is not None
    assert (inbound.user_ref, inbound.update_key, inbound.attachment.kind) == (OPENID, "1234567890123457", "photo")
    assert inbound.attachment.fetch is not None
    assert await inbound.attachment.fetch() == b"\xff\xd8K1aGdT3cL0w-media"
    assert asked == ["K1aGdT3cL0w-media"]


def test_an_image_without_a_media_id_is_not_taken_as_a_photo() -> None:
    inbound = _inbound(IMAGE.replace(b"<MediaId><![CDATA[K1aGdT3cL0w-media]]></MediaId>", b""))
    assert inbound is not None and inbound.attachment == Attachment("other")


def test_a_voice_message_is_what_wechat_recognised_in_it_or_else_a_voice_attachment_without_a_download() -> None:
    """An account with 接收语音识别结果 gets the words of every voice message (`Recognition`): they are the resident's
    answer, as if typed. Without it (or when WeChat heard nothing), the voice is explained."""
    fields = parse_xml(VOICE)
    assert (fields["Format"], fields["Recognition"]) == ("amr", "我要举报")
    asked: FetchedWith = []
    assert to_inbound(fields, _recording_fetcher(asked)) == Inbound(
        "wechat", OPENID, text="我要举报", update_key="1234567890123458")
    for unheard in ({**fields, "Recognition": " \n"}, {k: v for k, v in fields.items() if k != "Recognition"}):
        assert to_inbound(unheard, _recording_fetcher(asked)) == Inbound(
            "wechat", OPENID, attachment=Attachment("voice"), update_key="1234567890123458")
    assert asked == []


def test_a_shared_link_is_its_title_summary_and_address_as_text() -> None:
    """An article shared into the chat (MsgType link, e.g. a news report of the matter at the description step) was
    refused as a kind of message the bot cannot read, and its title and address were lost."""
    fields = {"FromUserName": OPENID, "CreateTime": "1700000000", "MsgType": "link", "MsgId": "78",
              "Title": "某区政务中心窗口  推诿扯皮", "Description": "市民反映办事难", "Url": "https://mp.weixin.qq.com/s/abc"}
    shared = "某区政务中心窗口 推诿扯皮\n市民反映办事难\nhttps://mp.weixin.qq.com/s/abc"
    assert to_inbound(fields, _recording_fetcher([])) == Inbound("wechat", OPENID, text=shared, update_key="78")


@pytest.mark.parametrize(("msg_type", "kind"), [
    ("video", "video"), ("Video", "video"), ("shortvideo", "video"), ("location", "location"),
    ("file", "other"), ("miniprogrampage", "other"), ("music_of_the_future", "other"),
])
def test_other_kinds_of_message_reach_the_dialog_as_an_attachment_it_can_explain(msg_type: str,
                                                                                 kind: AttachmentKind) -> None:
    inbound = to_inbound({"FromUserName": OPENID, "CreateTime": "1700000000", "MsgType": msg_type, "MsgId": "77"},
                         _recording_fetcher([]))
    assert inbound == Inbound("wechat", OPENID, attachment=Attachment(kind), update_key="77")


@pytest.mark.parametrize(("extra", "place"), [
    ({"Location_X": "28.228", "Location_Y": "112.939", "Scale": "15", "Label": " 长沙市岳麓区\n金星中路 "},
     "长沙市岳麓区 金星中路"),
    ({"Location_X": "28.228", "Location_Y": "112.939", "Scale": "15", "Label": ""}, "28.22800, 112.93900"),
    ({"Location_X": "north", "Location_Y": "112.939"}, None),
    ({"Location_X": "128.2", "Location_Y": "112.939"}, None),
])
def test_a_shared_location_carries_its_address_or_else_its_coordinates(extra: dict[str, str],
                                                                      place: str | None) -> None:
    inbound = to_inbound({"FromUserName": OPENID, "CreateTime": "1700000000", "MsgType": "location", "MsgId": "78",
                          **extra}, _recording_fetcher([]))
    assert inbound == Inbound("wechat", OPENID, attachment=Attachment("location", place=place), update_key="78")


@pytest.mark.parametrize(("content", "command", "argument"), [
    ("/Status  1234 5678 9012 3456 ", "status", "1234 5678 9012 3456"),
    ("  /help  ", "help", None),
    ("/REPORT", "report", None),
    ("/status\n1234 5678 9012 3456", "status", "1234 5678 9012 3456"),  # the code typed on the next line
    ("／status 1234 5678 9012 3456", "status", "1234 5678 9012 3456"),  # a Chinese keyboard's full-width slash
])
def test_a_text_with_a_leading_slash_is_a_command(content: str, command: str, argument: str | None) -> None:
    inbound = to_inbound({"FromUserName": OPENID, "CreateTime": "1700000000", "MsgType": "text", "Content": content,
                          "MsgId": "88"}, _recording_fetcher([]))
    assert inbound == Inbound("wechat", OPENID, command=command, command_arg=argument, update_key="88")


@pytest.mark.parametrize("text", ["hello /report", "/", "/ status", ""])
def test_parse_command_finds_no_command_without_a_leading_ascii_slash_and_a_name(text: str) -> None:
    assert parse_command(text) is None


def test_a_message_without_a_numeric_msgid_is_keyed_by_its_sender_time_and_content() -> None:
    base = {"FromUserName": OPENID, "CreateTime": "1700000001", "MsgType": "text", "Content": "你好"}
    assert _key(base) == _key(dict(base)) == _key({**base, "MsgId": "12a"})  # the same message delivered again
    assert str(_key(base)).startswith(f"{OPENID}:1700000001:text:")
    assert _key({**base, "MsgId": "42"}) == "42"


def test_two_messages_without_msgid_in_the_same_second_are_both_kept() -> None:
    """A text and a photo sent within one second, without a MsgId, had one key (sender and second): the photo was
    taken for a redelivery of the text and dropped."""
    text = {"FromUserName": OPENID, "CreateTime": "1700000001", "MsgType": "text", "Content": "窗口没人"}
    photo = {"FromUserName": OPENID, "CreateTime": "1700000001", "MsgType": "image", "MediaId": "m1", "PicUrl": "u"}
    other_photo = {**photo, "MediaId": "m2"}
    assert len({_key(text), _key(photo), _key(other_photo), _key({**text, "Content": "还是没人"})}) == 4


def _key(fields: dict[str, str]) -> str | None:
    inbound = to_inbound(fields, _recording_fetcher([]))
    assert inbound is not None
    return inbound.update_key


# --- events -------------------------------------------------------------------------------------


def test_a_subscription_starts_the_dialog_directly_or_through_a_qr_code() -> None:
    assert _inbound(_event("subscribe")) == Inbound(
        "wechat", OPENID, command="start", update_key=f"{OPENID}:1700000000:subscribe:")
    scanned = _inbound(_event("subscribe", "qrscene_123123").replace(
        b"</xml>", b"<Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8v]]></Ticket></xml>"))
    assert scanned == Inbound("wechat", OPENID, command="start",
                              update_key=f"{OPENID}:1700000000:subscribe:qrscene_123123")


@pytest.mark.parametrize(("key", "command"), [("REPORT", "report"), ("STATUS", "status"), ("HELP", "help")])
def test_each_menu_button_runs_its_command(key: str, command: str) -> None:
    assert _inbound(_event("CLICK", key)) == Inbound(
        "wechat", OPENID, command=command, update_key=f"{OPENID}:1700000000:click:{key}")


def test_the_same_button_pressed_again_later_is_another_update() -> None:
    first, again = _inbound(_event("CLICK", "REPORT")), _inbound(_event("CLICK", "REPORT", created=1700000060))
    assert first is not None and again is not None and first.update_key != again.update_key


@pytest.mark.parametrize("document", [
    _event("unsubscribe"),
    _event("CLICK", "report"),  # keys are matched exactly
    _event("CLICK", "SHARE"),
    _event("CLICK"),
    _event("SCAN", "123123"),
    _event("LOCATION"),
    _event("subscribe_msg_popup_event"),
])
def test_events_the_dialog_does_not_act_on_become_nothing(document: bytes) -> None:
    assert _inbound(document) is None


POPUP = f"""<xml>
    <ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>
    <FromUserName><![CDATA[{OPENID}]]></FromUserName>
    <CreateTime>1610969440</CreateTime>
    <MsgType><![CDATA[event]]></MsgType>
    <Event><![CDATA[subscribe_msg_popup_event]]></Event>
    <SubscribeMsgPopupEvent>
        <List>
            <TemplateId><![CDATA[tpl-progress]]></TemplateId>
            <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>
            <PopupScene>2</PopupScene>
        </List>
        <List>
            <TemplateId><![CDATA[tpl-banned]]></TemplateId>
            <SubscribeStatusString><![CDATA[ban]]></SubscribeStatusString>
            <PopupScene>2</PopupScene>
        </List>
        <List>
            <TemplateId><![CDATA[tpl-answer]]></TemplateId>
            <SubscribeStatusString><![CDATA[Reject]]></SubscribeStatusString>
            <PopupScene>2</PopupScene>
        </List>
    </SubscribeMsgPopupEvent>
</xml>""".encode()


def test_the_subscription_pop_up_lists_each_templates_answer() -> None:
    fields = parse_xml(POPUP)
    assert fields["SubscribeMsgPopupEvent.List0.TemplateId"] == "tpl-progress"
    assert fields["SubscribeMsgPopupEvent.List2.SubscribeStatusString"] == "Reject"
    assert fields["SubscribeMsgPopupEvent.List1.PopupScene"] == "2"
    assert subscription_choices(fields) == [("tpl-progress", "accept"), ("tpl-answer", "reject")]


def test_a_change_in_wechats_settings_is_read_under_either_wrapper() -> None:
    changed = (b"<xml><FromUserName>o</FromUserName><MsgType>event</MsgType>"
               b"<Event>subscribe_msg_change_event</Event><SubscribeMsgChangeEvent>"
               b"<List><TemplateId>tpl-progress</TemplateId><SubscribeStatusString>reject</SubscribeStatusString>"
               b"</List></SubscribeMsgChangeEvent></xml>")
    assert subscription_choices(parse_xml(changed)) == [("tpl-progress", "reject")]
    assert subscription_choices(parse_xml(changed.replace(b"SubscribeMsgChangeEvent", b"SubscribeMsgPopupEvent"))) \
        == [("tpl-progress", "reject")]
    assert subscription_choices(parse_xml(_event("subscribe"))) == []


def test_repeated_lists_are_numbered_under_each_parent_separately() -> None:
    fields = parse_xml(b"<xml><A><List><V>1</V></List><List><V>2</V></List></A><B><List><V>3</V></List></B></xml>")
    assert {k: v for k, v in fields.items() if v} == {"A.List0.V": "1", "A.List1.V": "2", "B.List0.V": "3"}


# --- refusing what is not a callback -----------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"MsgType": "text", "CreateTime": "1700000000"},
    {"FromUserName": OPENID, "CreateTime": "1700000000"},
    {"FromUserName": OPENID, "MsgType": "text"},
    {"FromUserName": OPENID, "MsgType": "text", "CreateTime": "17e8"},
    {"FromUserName": OPENID, "MsgType": "text", "CreateTime": "-1700000000"},
    {"FromUserName": "o" * 129, "MsgType": "text", "CreateTime": "1700000000"},
])
def test_fields_that_are_not_a_wechat_message_are_refused_with_a_400(fields: dict[str, str]) -> None:
    with pytest.raises(CallbackRejected) as refused:
        to_inbound(fields, _recording_fetcher([]))
    assert (refused.value.status, refused.value.reason) == (
        400, "not a WeChat message (FromUserName, MsgType, CreateTime)")


def test_an_openid_of_128_characters_is_accepted() -> None:
    inbound = to_inbound({"FromUserName": "o" * 128, "MsgType": "text", "CreateTime": "1", "Content": "hi"},
                         _recording_fetcher([]))
    assert inbound is not None and inbound.user_ref == "o" * 128


@pytest.mark.parametrize(("document", "reason"), [
    (b"<!DOCTYPE xml><xml><Content>x</Content></xml>", "DTDs and entity declarations are not accepted"),
    (b'<!DOCTYPE xml [<!ENTITY % remote SYSTEM "http://127.0.0.1:1/x.dtd"> %remote;]><xml/>',
     "DTDs and entity declarations are not accepted"),
    (b'<!DOCTYPE xml [<!ENTITY big "' + b"A" * 10_000 + b'">]><xml><Content>' + b"&big;" * 1000
     + b"</Content></xml>", "DTDs and entity declarations are not accepted"),  # quadratic blow-up
    (b"<root><Content>x</Content></root>", "root element <root>, not <xml>"),
    (b"<xml><A><B><C><D>x</D></C></B></A></xml>", "too deep or too many fields"),
    (b"<xml>" + b"".join(b"<F%d>1</F%d>" % (n, n) for n in range(201)) + b"</xml>", "too many fields"),
    (b"<xml></xml><xml></xml>", "junk after document element"),
    (b"<xml><Content>\xff\xfe</Content></xml>", "not well-formed"),
])
def test_hostile_or_malformed_xml_is_refused_with_a_400_and_the_reason(document: bytes, reason: str) -> None:
    with pytest.raises(CallbackRejected) as refused:
        parse_xml(document)
    assert refused.value.status == 400
    assert refused.value.reason.startswith("malformed XML: ") and reason in refused.value.reason


def test_the_field_limits_are_inclusive() -> None:
    assert len(parse_xml(b"<xml>" + b"".join(b"<F%d>1</F%d>" % (n, n) for n in range(200)) + b"</xml>")) == 200
    assert parse_xml(b"<xml><A><B><C>deep</C></B></A></xml>")["A.B.C"] == "deep"
    three = b"<xml><A>1</A><B>2</B><C>3</C></xml>"
    assert parse_xml(three, max_fields=3) == {"A": "1", "B": "2", "C": "3"}
    with pytest.raises(CallbackRejected):
        parse_xml(three.replace(b"</xml>", b"<D>4</D></xml>"), max_fields=3)


def test_xinclude_is_not_followed_and_the_predefined_entities_are_read() -> None:
    fields = parse_xml(b'<xml xmlns:xi="http://www.w3.org/2001/XInclude"><MsgType>text</MsgType>'
                       b'<Content>a &lt;b&gt; &amp; &#x4F60;&#22909;<xi:include href="file:///etc/passwd" '
                       b'parse="text"/></Content></xml>')
    assert fields["Content"] == "a <b> & 你好"
    assert not any("root:" in value for value in fields.values())


# --- the passive reply --------------------------------------------------------------------------


def test_the_passive_reply_is_wechats_text_reply_xml() -> None:
    assert text_reply_xml(OPENID, ACCOUNT, "第1步：问题发生在哪个区县？", create_time=1700000000) == (
        f"<xml><ToUserName><![CDATA[{OPENID}]]></ToUserName><FromUserName><![CDATA[{ACCOUNT}]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[第1步：问题发生在哪个区县？]]></Content></xml>")


def test_the_passive_reply_carries_the_current_time_by_default() -> None:
    before = int(time.time())
    created = int(parse_xml(text_reply_xml(OPENID, ACCOUNT, "好").encode())["CreateTime"])
    assert before <= created <= int(time.time())


def test_a_residents_text_cannot_break_out_of_the_reply_xml() -> None:
    hostile = "]]></Content><MsgType><![CDATA[news]]></MsgType><Content><![CDATA[点此领奖 http://evil.example"
    fields = parse_xml(text_reply_xml(OPENID, ACCOUNT, hostile, create_time=1700000000).encode())
    assert fields == {"ToUserName": OPENID, "FromUserName": ACCOUNT, "CreateTime": "1700000000", "MsgType": "text",
                      "Content": hostile}


def test_characters_xml_cannot_carry_are_dropped_and_the_rest_kept() -> None:
    text = "a\x00b\x07c\td\ne\x0bf\x0cg\x1fh\ufffei\uffffj\u0085k 🏛 ]]>"
    assert cdata(text) == "<![CDATA[abc\td\nefghij\u0085k 🏛 ]]]]><![CDATA[>]]>"
    assert parse_xml(f"<xml><Content>{cdata(text)}</Content></xml>".encode())["Content"] == \
        "abc\td\nefghij\u0085k 🏛 ]]>"


# --- rendering ----------------------------------------------------------------------------------


def _link(case_id: int) -> str:
    return f"https://mp.example/mp/subscribemsg?scene={case_id}#wechat_redirect"


def test_an_offer_of_notices_adds_the_subscription_link_before_the_choices() -> None:
    texts = Texts()
    receipt = Outbound("举报已提交，查询码：1234 5678 9012 3456", (Choice("menu:status", "查询进度"),), notice_offer=41)
    assert render_message(receipt, texts, _link) == (
        "举报已提交，查询码：1234 5678 9012 3456\n"
        "超过48小时未与本公众号互动时，微信只能通过订阅通知告知进度。点击 "
        '<a href="https://mp.example/mp/subscribemsg?scene=41#wechat_redirect">订阅本案进度通知</a>。\n'
        "1. 查询进度\n（回复数字选择）")
    english = render_message(Outbound("Your report was submitted.", notice_offer=7), texts, _link)
    assert english == ("Your report was submitted.\nIf you do not write to this account for 48 hours, WeChat lets "
                       'us tell you of progress only by a subscribed notice. Tap <a href="https://mp.example/mp/'
                       'subscribemsg?scene=7#wechat_redirect">subscribe to this case\'s progress</a>.')


def test_no_link_is_added_without_an_offer_or_without_a_template() -> None:
    texts = Texts()
    # without a template to subscribe to, the resident is told why news may wait for her next message: no link
    assert render_message(Outbound("已受理", notice_offer=41), texts, lambda case_id: None) == (
        "已受理\n提示：您超过48小时没有给本公众号发消息时，微信不允许我们主动通知您；这期间的进展会在您下次发消息时告诉您，"
        "也可以随时发送 /status 加查询码查询。")
    assert render_message(Outbound("已受理", notice_offer=41), texts) == "已受理"
    assert render_message(Outbound("已受理"), texts, _link) == "已受理"


def test_only_a_rating_with_a_numeric_value_is_numbered_by_its_value() -> None:
    question = Outbound("请选择：", (Choice("rate:x", "甲"), Choice("menu:help", "乙"), Choice("rate:3", "★★★")))
    assert render_message(question, Texts()) == "请选择：\n1. 甲\n2. 乙\n3. ★★★\n（回复数字选择）"
    stars = Outbound("请打分：", (Choice("rate:2", "★★"), Choice("rate:1", "★")))
    assert render_message(stars, Texts()) == "请打分：\n2. ★★\n1. ★\n（回复数字选择）"


def test_a_steps_replies_go_as_one_text_separated_by_blank_lines() -> None:
    menu = Outbound("请选择您要办理的事项：", (Choice("menu:report", "我要举报"), Choice("menu:status", "查询进度")))
    messages = [Outbound("已取消本次举报。"), Outbound(""), menu]
    assert render_replies(messages, Texts()) == \
        "已取消本次举报。\n\n请选择您要办理的事项：\n1. 我要举报\n2. 查询进度\n（回复数字选择）"
    assert render_replies([], Texts()) == ""


# --- splitting long text ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "limit", "pieces"), [
    ("ab\ncd\nef", 5, ["ab\ncd", "ef"]),
    ("abcde", 5, ["abcde"]),
    ("abcdef", 5, ["abcde", "f"]),
    ("你好世界", 7, ["你好", "世界"]),  # 3 bytes each: never half a character
    ("你好世界", 5, ["你", "好", "世", "界"]),
    ("你好", 2, ["你", "好"]),  # a character wider than the limit still goes, alone
    ("a\n \n\n", 1, ["a"]),  # pieces of nothing but blanks are not sent
    ("\n\n第一段\n\n第二段", 2048, ["第一段\n\n第二段"]),
])
def test_text_is_cut_into_pieces_of_at_most_the_limit_in_utf8_bytes(text: str, limit: int, pieces: list[str]) -> None:
    assert split_text(text, limit) == pieces


def test_wechats_limit_is_2048_bytes_by_default() -> None:
    assert split_text("举" * 700) == ["举" * 682, "举" * 18]  # 682 × 3 = 2046 bytes; one more would be 2049


def test_the_hint_to_reply_with_a_number_is_in_the_residents_language_whatever_the_text_quotes() -> None:
    """An English resident's summary quotes their Chinese place and description: the hint followed the text's
    characters and came in Chinese."""
    summary = Outbound("Summary:\nPlace: 岳麓区政务服务中心\nWhat happened: 窗口人员玩手机", (
        Choice("summary:submit", "✅ Submit"), Choice("summary:edit", "✏️ Edit")), locale="en")
    assert render_message(summary, Texts()).endswith("\n2. ✏️ Edit\n(Reply with a number)")


@pytest.mark.parametrize(("text", "english"), [
    ("Hello, I want to report a police officer.", True), ("the clerk was rude", True),
    ("Wanda Plaza", False), ("我在Wanda Plaza门口被收了钱", False), ("OK", False), ("1", False), ("", False),
    (None, False),
])
def test_a_text_reads_english_with_three_words_and_no_chinese(text: str | None, english: bool) -> None:
    assert reads_english(text) is english
