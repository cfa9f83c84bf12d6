"""The dashboard's Starlette app: sign-in, the overview, experiments, model health and adjustments (issue 15,
first part).

Every page needs a signed-in user (else a redirect to sign-in); a change needs the role the action names
and the form's CSRF token. Plotly's JavaScript is served from the installed ``plotly`` package: the pages
work with no internet. Amounts are whole KRW with thousands separators."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from core.config import Config
from serving.dashboard import data
from serving.dashboard.auth import (
    SESSION_HOURS,
    SignInNeededError,
    check_csrf,
    csrf_token,
    current_user,
    require,
    signing_key,
)
from serving.policy import PolicyError
from system_db.overrides import FIELDS, OverrideError, Overrides, merged
from system_db.store import SystemStore
from system_db.users import User, Users

TEMPLATES = Path(__file__).parent / "templates"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def krw(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} KRW"


def chart(figure: go.Figure) -> str:
    """A figure as a div and its script, drawn by the page's own plotly.min.js."""
    figure.update_layout(margin={"l": 40, "r": 10, "t": 30, "b": 40}, height=320, template="plotly_white")
    return str(figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


class Dashboard:
    """The dashboard as an ASGI app, built on its first request (the configuration is read then, not when
    the service's module is imported)."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self.config = config
        self.app: Starlette | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            self.app = build(self.config)
        await self.app(scope, receive, send)


def check_override(cfg: Config, store: SystemStore, field: str, value: Any) -> None:
    """Refuse an override the served model cannot follow (:func:`serving.policy.check_settings`): the service
    would keep its old settings and mark itself degraded until it is mended. Without a served model only the
    settings' own checks apply (as in the API)."""
    from serving.policy import check_settings

    arms = data.served_arms(cfg)
    if arms is not None and value is not None:
        check_settings(merged(cfg.serving.policy, {**Overrides(store).read(), field: value}), arms)


def href(request: Request, path: str) -> str:
    """``path`` under wherever the dashboard is mounted (``/dashboard`` on the service)."""
    return str(request.scope.get("root_path", "")).rstrip("/") + path


def build(config: Callable[[], Config]) -> Starlette:
    """The dashboard's app for the configuration ``config`` gives."""
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["krw"] = krw

    @cache
    def stores() -> tuple[Config, SystemStore, Users]:
        cfg = config()
        store = SystemStore(cfg.system_db_url)
        return cfg, store, Users(store)

    def page(request: Request, user: User, name: str, status_code: int = 200, **context: Any) -> Response:
        context = {"user": user, "csrf": csrf_token(request), "base": href(request, ""), **context}
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    async def signin_form(request: Request) -> Response:
        context = {"csrf": csrf_token(request), "base": href(request, ""), "error": None}
        return templates.TemplateResponse(request, "signin.html", context)

    async def signin(request: Request) -> Response:
        form = await request.form()
        check_csrf(request, str(form.get("csrf", "")))
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        user = stores()[2].check(name, password)
        if user is None:
            error = "unknown user or wrong password"
            context = {"csrf": csrf_token(request), "base": href(request, ""), "error": error}
            return templates.TemplateResponse(request, "signin.html", context, status_code=401)
        request.session.clear()  # a new session (and CSRF token) for the signed-in user
        request.session["user"] = user.name
        return RedirectResponse(href(request, "/"), status_code=303)

    async def signout(request: Request) -> Response:
        form = await request.form()
        check_csrf(request, str(form.get("csrf", "")))
        request.session.clear()
        return RedirectResponse(href(request, "/signin"), status_code=303)

    async def overview(request: Request) -> Response:
        _, store, users = stores()
        user = current_user(request, users)  # before any work: an anonymous request reads nothing
        segments = data.dormant_by_segment(store)
        at, arms = data.latest_batch_by_arm(store)
        figure = None
        if len(segments):
            bars = go.Figure(go.Bar(x=segments["players"], y=segments["segment"], orientation="h"))
            figure = chart(bars.update_layout(title="dormant players by segment", yaxis={"autorange": "reversed"}))
        return page(request, user, "overview.html", segments=segments.to_dict("records"), batch_at=at,
                    arms=arms.to_dict("records"), segments_chart=figure)  # fmt: skip

    def adjustments_page(request: Request, user: User, error: str | None = None) -> Response:
        o = Overrides(stores()[1])
        audit = o.history().tail(50).iloc[::-1].to_dict("records")
        return page(request, user, "adjustments.html", 422 if error else 200, overrides=o.read(), fields=list(FIELDS),
                    audit=audit, error=error)  # fmt: skip

    async def adjustments(request: Request) -> Response:
        return adjustments_page(request, current_user(request, stores()[2]))

    async def adjust(request: Request) -> Response:
        cfg, store, users = stores()
        user = current_user(request, users)
        form = await request.form()
        check_csrf(request, str(form.get("csrf", "")))
        require(user, "marketer")
        field, text = str(form.get("field", "")), str(form.get("value", "")).strip()
        try:
            value = None if text == "" else json.loads(text)
        except json.JSONDecodeError:
            value = text  # a bare word: a string setting
        try:  # refused as the API refuses it (an arm or event type the served model cannot send, too)
            check_override(cfg, store, field, value)
            Overrides(store).set(field, value, who=f"{user.name} (dashboard)", base=cfg.serving.policy)
        except (OverrideError, PolicyError) as exc:
            return adjustments_page(request, user, str(exc))
        return RedirectResponse(href(request, "/adjustments"), status_code=303)

    async def experiments(request: Request) -> Response:
        cfg, store, users = stores()
        user = current_user(request, users)
        listed = data.experiments(store)
        rows = []
        for e in listed.to_dict("records"):
            table, p = data.exposures(store, str(e["name"]), dict(e["shares"]))
            report = cfg.path("experiments", str(e["name"]), "report.html").is_file()
            rows.append({**e, "exposures": table.to_dict("records"), "srm": p, "report": report})
        return page(request, user, "experiments.html", experiments=rows)

    async def experiment_report(request: Request) -> Response:
        cfg, store, users = stores()
        current_user(request, users)
        name = request.path_params["name"]
        if name not in set(data.experiments(store)["name"]):  # only a known experiment's own report: no paths
            raise HTTPException(404, f"no experiment named {name!r}")
        path = cfg.path("experiments", name, "report.html")
        if not path.is_file():
            raise HTTPException(404, f"experiment {name!r} has no report yet: run `rekindle experiment report {name}`")
        return FileResponse(path, media_type="text/html")

    async def health(request: Request) -> Response:
        cfg, store, users = stores()
        user = current_user(request, users)
        runs, events = data.monitor_runs(store), data.model_events(store)
        figure = None
        if len(runs):
            fig = go.Figure()
            fig.add_trace(go.Scatter(x=runs["at"], y=runs["roi_accuracy"], name="ROI accuracy", mode="lines+markers"))
            fig.add_trace(go.Scatter(x=runs["at"], y=runs["lift_z"], name="lift check z", mode="lines+markers",
                                     yaxis="y2"))  # fmt: skip
            alerts = runs[runs["alert"]]
            fig.add_trace(go.Scatter(x=alerts["at"], y=[0] * len(alerts), name="alert", mode="markers",
                                     marker={"color": "#b42318", "size": 12, "symbol": "x"}, yaxis="y2"))  # fmt: skip
            fig.update_layout(title="monitoring runs", yaxis={"title": "ROI accuracy"},
                              yaxis2={"title": "z", "overlaying": "y", "side": "right"})  # fmt: skip
            figure = chart(fig)
        return page(request, user, "health.html", models=data.served_models(cfg), runs_chart=figure,
                    runs=runs.iloc[::-1].to_dict("records"), events=events.to_dict("records"))  # fmt: skip

    async def plotly_js(request: Request) -> Response:
        return FileResponse(PLOTLY_JS, media_type="application/javascript")

    async def sign_in_first(request: Request, exc: Exception) -> Response:
        return RedirectResponse(href(request, "/signin"), status_code=303)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        context = {"status": exc.status_code, "detail": exc.detail, "base": href(request, "")}
        return templates.TemplateResponse(request, "error.html", context, status_code=exc.status_code)

    routes = [
        Route("/", overview, name="overview"),
        Route("/signin", signin_form, methods=["GET"], name="signin_form"),
        Route("/signin", signin, methods=["POST"], name="signin"),
        Route("/signout", signout, methods=["POST"], name="signout"),
        Route("/adjustments", adjustments, methods=["GET"], name="adjustments"),
        Route("/adjustments", adjust, methods=["POST"], name="adjust"),
        Route("/experiments", experiments, name="experiments"),
        Route("/experiments/{name}/report", experiment_report, name="experiment_report"),
        Route("/health", health, name="health"),
        Route("/static/plotly.min.js", plotly_js, name="plotly_js"),
    ]

    def session() -> Middleware:
        key = signing_key(stores()[0].home)
        return Middleware(SessionMiddleware, secret_key=key, session_cookie="rekindle_dashboard",
                          max_age=SESSION_HOURS * 3600, same_site="strict", https_only=False)  # fmt: skip

    return Starlette(
        routes=routes,
        middleware=[session()],
        exception_handlers={SignInNeededError: sign_in_first, HTTPException: refused},
    )
