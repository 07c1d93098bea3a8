"""The console's pages, one router per page group."""

from __future__ import annotations

from fastapi import APIRouter

from console.routes import account, audit, cases, exports, login, models, problems, staff, stats, ticket, workday

ROUTERS: tuple[APIRouter, ...] = (login.router, cases.router, ticket.router, account.router, staff.router,
                                  models.router, stats.router, audit.router, workday.router, exports.router,
                                  problems.router)
