"""The dashboard's Starlette app: sign-in and the pages (issue 15).

Every page needs a signed-in user (else a redirect to sign-in); a change needs the role the action names
and the form's CSRF token. Plotly's JavaScript is served from the installed ``plotly`` package: the pages
work with no internet. Amounts are whole KRW with thousands separators. The pages live one idea per module
(:mod:`serving.dashboard.pages`, :mod:`serving.dashboard.admin`, ...); this module gathers their routes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from core.config import Config
from serving.dashboard import admin, data, pages, planner_page, players
from serving.dashboard.auth import SESSION_HOURS, SignInNeededError, check_csrf, csrf_token, signing_key
from serving.dashboard.site import Site, href

if TYPE_CHECKING:
    from serving.engine import Engine

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class Dashboard:
    """The dashboard as an ASGI app, built on its first request (the configuration is read then, not when
    the service's module is imported). ``engine``: the service's engine, for the player look-up."""

    def __init__(self, config: Callable[[], Config], engine: Callable[[], Engine | None] | None = None) -> None:
        self.config = config
        self.engine = engine
        self.app: Starlette | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            self.app = build(self.config, self.engine)
        await self.app(scope, receive, send)


def build(config: Callable[[], Config], engine: Callable[[], Engine | None] | None = None) -> Starlette:
    """The dashboard's app for the configuration ``config`` gives."""
    site = Site(config, engine)

    def signin_page(request: Request, error: str | None = None) -> Response:
        return site.page(request, None, "signin.html", 401 if error else 200, error=error)

    async def signin_form(request: Request) -> Response:
        return signin_page(request)

    async def signin(request: Request) -> Response:
        form = await request.form()
        check_csrf(request, str(form.get("csrf", "")))
        # scrypt is ~0.1 s of CPU by design: off the event loop, which the service's API shares
        user = await run_in_threadpool(site.users.check, str(form.get("name", "")), str(form.get("password", "")))
        if user is None:
            return signin_page(request, "unknown user or wrong password")
        request.session.clear()  # a new session (and CSRF token) for the signed-in user
        request.session["user"] = user.name
        csrf_token(request)
        return RedirectResponse(href(request, "/"), status_code=303)

    async def signout(request: Request) -> Response:
        form = await request.form()
        check_csrf(request, str(form.get("csrf", "")))
        request.session.clear()
        return RedirectResponse(href(request, "/signin"), status_code=303)

    async def plotly_js(request: Request) -> Response:
        return FileResponse(PLOTLY_JS, media_type="application/javascript")

    async def sign_in_first(request: Request, exc: Exception) -> Response:
        return RedirectResponse(href(request, "/signin"), status_code=303)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        context = {"status": exc.status_code, "detail": exc.detail, "base": href(request, "")}
        return site.templates.TemplateResponse(request, "error.html", context, status_code=exc.status_code)

    routes = [
        Route("/signin", signin_form, methods=["GET"], name="signin_form"),
        Route("/signin", signin, methods=["POST"], name="signin"),
        Route("/signout", signout, methods=["POST"], name="signout"),
        Route("/static/plotly.min.js", plotly_js, name="plotly_js"),
        *pages.routes(site),
        *players.routes(site),
        *planner_page.routes(site),
        *admin.routes(site),
    ]

    def session() -> Middleware:
        key = signing_key(site.cfg.home)
        return Middleware(SessionMiddleware, secret_key=key, session_cookie="rekindle_dashboard",
                          max_age=SESSION_HOURS * 3600, same_site="strict", https_only=False)  # fmt: skip

    def warm() -> None:  # the registry's answers and the overview's aggregates before the first visitor
        with contextlib.suppress(Exception):  # no registry or store yet: the pages say so when asked
            pages.overview_figures(site)
            data.served_models(site.cfg)

    threading.Thread(target=warm, name="dashboard-warm", daemon=True).start()
    return Starlette(
        routes=routes,
        middleware=[session()],
        exception_handlers={SignInNeededError: sign_in_first, HTTPException: refused},
    )
