"""A minimal aiogram 3 report bot: a `StatesGroup` FSM in the default `MemoryStorage`.

    python -m benchmarks.plain_bots.aiogram_fsm_bot --api-url http://127.0.0.1:8081 --token 123:ABC

The same dialog, texts and keyboards as Qinglian's report flow, for benchmarks/telegram_path.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

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

router = Router()


class Report(StatesGroup):
    district = State()
    place = State()
    when = State()
    description = State()
    evidence = State()
    identity = State()
    name = State()
    phone = State()
    summary = State()


def keyboard(rows: list[list[tuple[str, str]]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=label, callback_data=data) for data, label in row] for row in rows
    ])


@router.message(Command("report"))
async def report(message: Message, state: FSMContext) -> None:
    await state.set_data({})
    await state.set_state(Report.district)
    await message.answer(T["report_intro"])
    await message.answer(ASK_DISTRICT, reply_markup=keyboard(DISTRICT_ROWS))


@router.message(Command("cancel"))
@router.callback_query(Report.summary, F.data == "summary:cancel")
async def cancel(event: Message | CallbackQuery, state: FSMContext) -> None:
    message = event if isinstance(event, Message) else event.message
    if isinstance(event, CallbackQuery):
        await event.answer()
    await state.clear()
    await message.answer(T["cancelled_report"])
    await message.answer(T["menu"], reply_markup=keyboard(MENU_ROWS))


@router.callback_query(Report.district, F.data.startswith("district:"))
async def district(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.update_data(district=query.data.split(":", 1)[1])
    await state.set_state(Report.place)
    await query.message.answer(T["ask_place"])


@router.message(Report.place, F.text)
async def place(message: Message, state: FSMContext) -> None:
    text = message.text.strip()
    if sum(ch.isalnum() for ch in text) < 2:
        await message.answer(T["error_place_short"])
        await message.answer(T["ask_place"])
        return
    await state.update_data(place=text)
    await state.set_state(Report.when)
    await message.answer(T["ask_when"], reply_markup=keyboard(WHEN_ROWS))


@router.callback_query(Report.when, F.data.startswith("when:"))
async def when(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.update_data(occurred=occurred(query.data.split(":", 1)[1]))
    await state.set_state(Report.description)
    await query.message.answer(ASK_DESCRIPTION)


@router.message(Report.description, F.text)
async def description(message: Message, state: FSMContext) -> None:
    text = message.text.strip()
    if sum(ch.isalnum() for ch in text) < MIN_DESCRIPTION or len(text) > MAX_DESCRIPTION:
        await message.answer(T["error_description_short"].format(minimum=MIN_DESCRIPTION))
        await message.answer(ASK_DESCRIPTION)
        return
    await state.update_data(description=text)
    await state.set_state(Report.evidence)
    await message.answer(ASK_EVIDENCE, reply_markup=keyboard(EVIDENCE_ROWS))


@router.callback_query(Report.evidence, F.data == "evidence:done")
async def evidence_done(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.set_state(Report.identity)
    await query.message.answer(T["ask_identity"], reply_markup=keyboard(IDENTITY_ROWS))


@router.callback_query(Report.identity, F.data.startswith("identity:"))
async def identity(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    if query.data == "identity:real":
        await state.set_state(Report.name)
        await query.message.answer(T["ask_name"])
        return
    draft = await state.update_data(anonymous=True)
    await state.set_state(Report.summary)
    await query.message.answer(summary(draft), reply_markup=keyboard(SUMMARY_ROWS))


@router.message(Report.name, F.text)
async def name(message: Message, state: FSMContext) -> None:
    await state.update_data(name=message.text.strip())
    await state.set_state(Report.phone)
    await message.answer(T["ask_phone"])


@router.message(Report.phone, F.text)
async def phone(message: Message, state: FSMContext) -> None:
    digits = "".join(ch for ch in message.text if ch.isdigit())
    if len(digits) != 11 or not digits.startswith("1"):
        await message.answer(T["error_phone"])
        return
    draft = await state.update_data(anonymous=False, phone=digits)
    await state.set_state(Report.summary)
    await message.answer(summary(draft), reply_markup=keyboard(SUMMARY_ROWS))


@router.callback_query(Report.summary, F.data == "summary:submit")
async def submit(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.clear()
    await query.message.answer(submitted())
    await query.message.answer(T["menu"], reply_markup=keyboard(MENU_ROWS))


async def run(api_url: str, token: str) -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
    bot = Bot(token, session=session)
    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    await dispatcher.start_polling(bot, allowed_updates=["message", "callback_query"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True, help="Bot API root, e.g. http://127.0.0.1:8081")
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args.api_url.rstrip("/"), args.token))


if __name__ == "__main__":
    main()
