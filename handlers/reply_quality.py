"""The quality of a staff answer before it is sent (issue 15): `nlp.reply_quality` against the case's report,
with timeliness measured in the city's working days against the case's own deadline."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

from handlers.city import CityConfig
from handlers.routing import is_working_day
from nlp.reply_quality import ReplyScore, score_reply, working_days_between
from storage.models import Case
from storage.reply_scores import Scores


def score_answer(city: CityConfig, case: Case, text: str, now: datetime) -> ReplyScore:
    """How `text` answers `case`: relevance to its report, completeness, clarity and timeliness (working days
    from receipt to `now`, against the working days the case was given to be resolved)."""
    zone = ZoneInfo(city.timezone)
    received = case.created_at.astimezone(zone)
    calendar = partial(is_working_day, city)  # the city's, as its deadlines count: holidays and make-up days
    deadline = None
    if case.resolve_due_at is not None:
        deadline = max(1, working_days_between(received.date(), case.resolve_due_at.astimezone(zone).date(),
                                               calendar))
    return score_reply(case.description, text, received=received, replied=now.astimezone(zone),
                       deadline_working_days=deadline, is_working_day=calendar)


def stored(score: ReplyScore) -> Scores:
    """The score as `storage.reply_scores` keeps it: the reasons as codes and parameters, rendered when read."""
    return Scores(score=score.score, relevance=score.relevance, completeness=score.completeness,
                  clarity=score.clarity, timeliness=score.timeliness,
                  reasons=[{"code": reason.code, "params": dict(reason.params)} for reason in score.reasons])
