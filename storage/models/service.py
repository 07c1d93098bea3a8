"""Bookkeeping of the service itself, shared by its processes: the send budget, scheduled job runs and the
WeChat access token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Float,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, utcnow


class RateBudget(Base):
    """A send rate shared by every process (the Telegram Bot API's ~30 messages a second, 20 a minute per
    group): `next_at` is the earliest time, in seconds since the epoch, the next request may go out."""

    __tablename__ = "rate_budgets"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    next_at: Mapped[float] = mapped_column(Float, default=0.0)


class JobRun(Base):
    """The last run of a scheduled job, so a schedule fires once across workers."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_run_at: Mapped[datetime]


class WeChatAccessToken(Base):
    """The Official Account's API access token, shared by every process: each token WeChat issues
    retires the previous one within minutes, so processes must not fetch their own."""

    __tablename__ = "wechat_access_tokens"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)
