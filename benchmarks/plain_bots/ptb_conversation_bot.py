"""A minimal python-telegram-bot report bot: one `ConversationHandler`, drafts in `user_data` (memory).

    python -m benchmarks.plain_bots.ptb_conversation_bot --api-url http://127.0.0.1:8081 --token 123:ABC

The same dialog, texts and keyboards as Qinglian's report flow, for benchmarks/telegram_path.py.
"""

from __future__ import annotations

import argparse
import logging
import warnings

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from benchmarks.plain_bots import (
    ASK_DESCRIPTION,
    ASK_DISTRICT,
    ASK_EVIDENCE,
    DISTRICT_ROWS,
    EVIDENCE_ROWS,
    IDENTITY_ROWS,
    MAX_DESCRIPTION,
    MENU_ROWS,
    MIN_DESCRIPTION,
    SUMMARY_ROWS,
    WHEN_ROWS,
    T,
    occurred,
    submitted,
    summary,
)

DISTRICT, PLACE, WHEN, DESCRIPTION, EVIDENCE, IDENTITY, NAME, PHONE, SUMMARY = range(9)


def keyboard(rows: list[list[tuple[str, str]]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for data, label in row]
                                 for row in rows])


async def report(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    context.user_data.clear()
    await update.message.reply_text(T["report_intro"])
    await update.message.reply_text(ASK_DISTRICT, reply_markup=keyboard(DISTRICT_ROWS))
    return DISTRICT


async def district(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    query = update.callback_query
    await query.answer()
    context.user_data["district"] = query.data.split(":", 1)[1]
    await update.effective_chat.send_message(T["ask_place"])
    return PLACE


async def place(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    text = update.message.text.strip()
    if sum(ch.isalnum() for ch in text) < 2:
        await update.message.reply_text(T["error_place_short"])
        await update.message.reply_text(T["ask_place"])
        return PLACE
    context.user_data["place"] = text
    await update.message.reply_text(T["ask_when"], reply_markup=keyboard(WHEN_ROWS))
    return WHEN


async def when(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    query = update.callback_query
    await query.answer()
    context.user_data["occurred"] = occurred(query.data.split(":", 1)[1])
    await update.effective_chat.send_message(ASK_DESCRIPTION)
    return DESCRIPTION


async def description(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    text = update.message.text.strip()
    if sum(ch.isalnum() for ch in text) < MIN_DESCRIPTION or len(text) > MAX_DESCRIPTION:
        await update.message.reply_text(T["error_description_short"].format(minimum=MIN_DESCRIPTION))
        await update.message.reply_text(ASK_DESCRIPTION)
        return DESCRIPTION
    context.user_data["description"] = text
    await update.message.reply_text(ASK_EVIDENCE, reply_markup=keyboard(EVIDENCE_ROWS))
    return EVIDENCE


async def evidence_done(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    await update.callback_query.answer()
    await update.effective_chat.send_message(T["ask_identity"], reply_markup=keyboard(IDENTITY_ROWS))
    return IDENTITY


async def identity(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    query = update.callback_query
    await query.answer()
    if query.data == "identity:real":
        await update.effective_chat.send_message(T["ask_name"])
        return NAME
    context.user_data["anonymous"] = True
    await update.effective_chat.send_message(summary(context.user_data), reply_markup=keyboard(SUMMARY_ROWS))
    return SUMMARY


async def name(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    context.user_data["name"] = update.message.text.strip()
    await update.message.reply_text(T["ask_phone"])
    return PHONE


async def phone(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    digits = "".join(ch for ch in update.message.text if ch.isdigit())
    if len(digits) != 11 or not digits.startswith("1"):
        await update.message.reply_text(T["error_phone"])
        return PHONE
    context.user_data.update(anonymous=False, phone=digits)
    await update.message.reply_text(summary(context.user_data), reply_markup=keyboard(SUMMARY_ROWS))
    return SUMMARY


async def submit(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    await update.callback_query.answer()
    context.user_data.clear()
    await update.effective_chat.send_message(submitted())
    await update.effective_chat.send_message(T["menu"], reply_markup=keyboard(MENU_ROWS))
    return ConversationHandler.END


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    if update.callback_query:
        await update.callback_query.answer()
    context.user_data.clear()
    await update.effective_chat.send_message(T["cancelled_report"])
    await update.effective_chat.send_message(T["menu"], reply_markup=keyboard(MENU_ROWS))
    return ConversationHandler.END


def build(api_url: str, token: str) -> Application:
    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{api_url}/bot")
        .base_file_url(f"{api_url}/file/bot")
        .build()  # updates one by one (concurrent_updates=False), as ConversationHandler requires
    )
    text = filters.TEXT & ~filters.COMMAND
    # "per_message=False" with CallbackQueryHandlers is what we want (state per chat and user)
    warnings.filterwarnings("ignore", category=PTBUserWarning, message=".*per_message.*")
    application.add_handler(ConversationHandler(
        entry_points=[CommandHandler("report", report)],
        states={
            DISTRICT: [CallbackQueryHandler(district, pattern=r"^district:")],
            PLACE: [MessageHandler(text, place)],
            WHEN: [CallbackQueryHandler(when, pattern=r"^when:")],
            DESCRIPTION: [MessageHandler(text, description)],
            EVIDENCE: [CallbackQueryHandler(evidence_done, pattern=r"^evidence:done$")],
            IDENTITY: [CallbackQueryHandler(identity, pattern=r"^identity:")],
            NAME: [MessageHandler(text, name)],
            PHONE: [MessageHandler(text, phone)],
            SUMMARY: [CallbackQueryHandler(submit, pattern=r"^summary:submit$"),
                      CallbackQueryHandler(cancel, pattern=r"^summary:cancel$")],
        },
        fallbacks=[CommandHandler("cancel", cancel), CommandHandler("report", report)],
    ))
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True, help="Bot API root, e.g. http://127.0.0.1:8081")
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build(args.api_url.rstrip("/"), args.token).run_polling(allowed_updates=["message", "callback_query"])


if __name__ == "__main__":
    main()
