"""The parent app's pages: server-rendered (FastAPI + Jinja2), no script at all.

Every page carries strict security headers (a CSP without inline script, frame-ancestors
'none'); every POST carries a CSRF token (the session's, or before sign-in a double-submit
cookie); every family page goes through :class:`FamilyService`, so another family's id is
a 404 like an unknown one.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request

from config.errors import TeddyError
from config.settings import Settings
from sync.cloud import db, emails, family_keys
from sync.cloud.portal import auth, words
from sync.cloud.portal.service import NotFoundError, Parent

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "teddy_session"
PRE_COOKIE = "teddy_pre"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
"""Sent with every response."""


class Forbidden(TeddyError, PermissionError):
    """A POST without a valid CSRF token, or without a session."""


def create_app(settings: Settings, pool: Any = None, read_pool: Any = None) -> Any:
    """The ASGI app on a psycopg pool (opened from ``cloud.pg_dsn`` when not given) and, for
    the transcript pages' reads, a read-only pool on ``portal.read_dsn`` (a replica; opened
    from it when not given; None when it is not set: those reads use ``pool``)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles
    from fastapi.templating import Jinja2Templates

    if pool is None:
        pool = db.open_pool(settings.cloud)
    if read_pool is None and settings.portal.read_dsn is not None:
        read_pool = db.open_pool(settings.cloud, db.read_only,
                                 settings.portal.read_dsn.get_secret_value(),
                                 "TEDDY_PORTAL__READ_DSN")
    keys = family_keys.keyring() or family_keys.install(settings)
    keys.check()  # the cloud key exists (made now) before ingest needs it
    app = FastAPI(title="Teddy for parents", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.pool, app.state.read_pool = settings, pool, read_pool
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    words.install(templates.env)
    from sync.cloud.portal import controls

    controls.install(templates.env)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers[name] = value
        return response

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        signed = getattr(request.state, "signed", None)
        pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)
        response = templates.TemplateResponse(request, name, {
            "parent": signed[0] if signed else None,
            "csrf": signed[1] if signed else pre, **context}, status_code=status)
        if not signed and request.cookies.get(PRE_COOKIE) != pre:
            response.set_cookie(PRE_COOKIE, pre, httponly=True, samesite="strict",
                                secure=settings.portal.secure_cookies, path="/")
        return response

    @app.exception_handler(NotFoundError)
    def not_found(request: Request, exc: NotFoundError) -> HTMLResponse:
        return page(request, "message.html", 404, title="Not found",
                    message="There is nothing here. It may have been deleted.")

    @app.exception_handler(404)
    def not_found_route(request: Request, exc: Exception) -> HTMLResponse:
        return page(request, "message.html", 404, title="Not found",
                    message="There is nothing here. It may have been deleted.")

    @app.exception_handler(Forbidden)
    def forbidden(request: Request, exc: Forbidden) -> HTMLResponse:
        return page(request, "message.html", 403, title="Please try again",
                    message="This form expired. Go back, reload the page and try again.")

    from sync.cloud.portal import routes

    routes.add_routes(app, settings, page, HTMLResponse, PlainTextResponse, RedirectResponse)
    controls.add_routes(app, settings, page)
    return app


def connection(request: Request) -> Iterator[Any]:
    """A pooled connection for one request (the first one seals the addresses stored
    before migration 0012, see :func:`sync.cloud.emails.migrate`)."""
    with request.app.state.pool.connection() as conn:
        if not getattr(request.app.state, "emails_sealed", False):
            emails.migrate(conn)
            request.app.state.emails_sealed = True
        yield conn


def read_connection(request: Request) -> Iterator[Any]:
    """A pooled connection to the read replica for one request (None: no replica, read the
    primary)."""
    if request.app.state.read_pool is None:
        yield None
        return
    with request.app.state.read_pool.connection() as conn:
        yield conn


def signed_in(request: Any, conn: Any) -> tuple[Parent, str] | None:
    """The session of this request, remembered on ``request.state``."""
    found = auth.session(conn, request.cookies.get(SESSION_COOKIE))
    request.state.signed = found
    return found


async def read_form(request: Request) -> dict[str, Any]:
    """The posted form: its fields, and ``_multi`` (every value of repeated fields)."""
    form = await request.form()
    return dict(form.multi_items()) | {"_multi": form}


def check_csrf(form: dict[str, Any], expected: str | None) -> dict[str, Any]:
    """``form`` if its CSRF token matches ``expected`` (else :class:`Forbidden`)."""
    sent = form.get("csrf")
    if not expected or not isinstance(sent, str) or not secrets.compare_digest(sent, expected):
        raise Forbidden()
    return form


def day_of(value: datetime | None) -> str:
    """A date as a parent reads it."""
    return "-" if value is None else value.strftime("%A %d %B %Y")


def export_text(data: dict[str, Any]) -> str:
    """The export as plain text a parent can read."""
    lines = ["Teddy: everything kept for your family", ""]
    for bear in data["bears"]:
        lines.append(f"Bear {bear['device_id']} ({bear['child_name'] or 'no name given'})")
        for conversation in bear["conversations"]:
            first = conversation["turns"][0]["created_at"]
            lines.append(f"  Conversation of {day_of(first)}")
            for turn in conversation["turns"]:
                who = "Child" if turn["role"] == "child" else "Teddy"
                flag = "" if turn["action"] == "allow" else f"  [safety: {turn['action']}]"
                lines.append(f"    {turn['created_at']:%H:%M} {who}: {turn['text']}{flag}")
        lines.append("")
    for alert in data["alerts"]:
        lines.append(f"Alert {alert['raised_at']:%Y-%m-%d %H:%M}: {alert['message']}")
        if alert.get("turn"):
            lines.append(f"  Your child said: {alert['turn']}")
    return "\n".join(lines) + "\n"


def to_json(data: Any) -> str:
    """JSON with dates as ISO text."""
    def default(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value.isoformat()
        return str(value)
    return json.dumps(data, indent=2, default=default, sort_keys=True)

