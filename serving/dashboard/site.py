"""What every page of the dashboard shares: the configuration and stores (opened on first use), the templates,
who is signed in, and links under wherever the dashboard is mounted. A page module gives its routes as
``routes(site) -> list[Route]``; :func:`serving.dashboard.app.build` gathers them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from functools import cached_property
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from core.config import Config
from serving.dashboard.auth import check_csrf, csrf_token, current_user, require
from system_db.store import SystemStore
from system_db.users import User, UserRole, Users

if TYPE_CHECKING:
    from serving.engine import Engine

TEMPLATES = Path(__file__).parent / "templates"


def krw(value: float | None) -> str:
    """Whole KRW with thousands separators ("-" for none)."""
    if not isinstance(value, Real | Decimal) or value != value:  # PostgreSQL sums integers as Decimal
        return "-"
    return f"{float(value):,.0f} KRW"


def pct(value: float | None, signed: bool = False) -> str:
    """A share as a percentage with one decimal ("-" for none)."""
    if not isinstance(value, Real | Decimal) or value != value:
        return "-"
    return f"{float(value):+.1%}" if signed else f"{float(value):.1%}"


# plotly_white's look in a few lines: the full template is deep-copied into every figure (~100 ms a chart)
LIGHT = go.layout.Template(layout={
    "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"color": "#2a3f5f"},
    "colorway": ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880"],
    "xaxis": {"gridcolor": "#ebf0f8", "zerolinecolor": "#ebf0f8"},
    "yaxis": {"gridcolor": "#ebf0f8", "zerolinecolor": "#ebf0f8"},
})  # fmt: skip


def chart(figure: go.Figure, height: int = 320, top: int = 30) -> str:
    """A figure as a div and its script, drawn by the page's own plotly.min.js (served from the package)."""
    figure.update_layout(margin={"l": 40, "r": 10, "t": top, "b": 40}, height=height, template=LIGHT)
    figure.update_xaxes(automargin=True).update_yaxes(automargin=True)  # long segment and arm names fit
    return str(figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def href(request: Request, path: str) -> str:
    """``path`` under wherever the dashboard is mounted (``/dashboard`` on the service)."""
    return str(request.scope.get("root_path", "")).rstrip("/") + path


MEMO_SECONDS = 60  # an aggregate is kept this long at most, and less when the data behind it moves


class Site:
    """The dashboard's shared state. ``engine`` gives the serving engine when the dashboard runs inside the
    service (the player look-up asks it); standalone, one is opened on first use."""

    def __init__(self, config: Callable[[], Config], engine: Callable[[], Engine | None] | None = None) -> None:
        self._config = config
        self._engine = engine
        self._own_engine: Engine | None = None
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        self.templates.env.filters["krw"] = krw
        self.templates.env.filters["when"] = self.when
        self.templates.env.filters["pct"] = pct
        self._memo: dict[str, tuple[object, float, Any]] = {}  # name -> (key, when computed, value)
        self._refreshing: set[str] = set()
        self._memo_lock = threading.Lock()

    def memo(self, name: str, key: object, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept under ``name`` while ``key`` holds (the latest batch's time, the latest
        segmentation's): the pages' aggregates of millions of rows are computed once per change, not once per
        page. A value older than :data:`MEMO_SECONDS` is still answered while a background thread computes it
        again (outcomes measured since then show within a minute, and no visitor waits for them)."""
        with self._memo_lock:
            held = self._memo.get(name)
            stale = held is not None and held[0] == key and time.monotonic() - held[1] > MEMO_SECONDS
            refresh = stale and name not in self._refreshing
            if refresh:
                self._refreshing.add(name)
        if held is not None and held[0] == key:
            if refresh:
                threading.Thread(target=self._recompute, args=(name, key, compute), daemon=True).start()
            return held[2]
        return self._recompute(name, key, compute)

    def _recompute(self, name: str, key: object, compute: Callable[[], Any]) -> Any:
        try:
            value = compute()
            with self._memo_lock:
                self._memo[name] = (key, time.monotonic(), value)
            return value
        finally:
            with self._memo_lock:
                self._refreshing.discard(name)

    @cached_property
    def cfg(self) -> Config:
        return self._config()

    @cached_property
    def store(self) -> SystemStore:
        return SystemStore(self.cfg.system_db_url)

    @cached_property
    def users(self) -> Users:
        return Users(self.store)

    def when(self, moment: Any, seconds: bool = False) -> str:
        """A stored (naive UTC) time in the platform's time zone (``business.time_zone``), with its abbreviation."""
        if moment is None or moment != moment:
            return ""
        t = pd.Timestamp(moment)
        t = (t.tz_localize("UTC") if t.tzinfo is None else t).tz_convert(self.cfg.business.time_zone)
        return t.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")

    def engine(self) -> Engine:
        """The serving engine (the service's own when mounted there)."""
        given = self._engine() if self._engine is not None else None
        if given is not None:
            return given
        if self._own_engine is None:  # a look-up asks for a player or two: no reading every candidate ahead
            from serving.engine import Engine

            quiet = self.cfg.serving.model_copy(update={"prefetch": False})
            self._own_engine = Engine(self.cfg.model_copy(update={"serving": quiet}))
        return self._own_engine

    def user(self, request: Request, role: UserRole | None = None) -> User:
        """Who is signed in (else the app redirects to sign-in); 403 unless they have ``role``. Called before a
        page reads anything: an anonymous request does no work."""
        user = current_user(request, self.users)
        if role is not None:
            require(user, role)
        return user

    async def form(self, request: Request, user: User, role: UserRole) -> dict[str, str]:
        """A submitted form's fields, after its CSRF token and the user's role are checked."""
        form = await request.form()
        check_csrf(request, str(form.get("csrf", "")))
        require(user, role)
        return {k: str(v) for k, v in form.items() if isinstance(v, str)}

    def page(self, request: Request, user: User | None, name: str, status_code: int = 200, **context: Any) -> Response:
        context = {"user": user, "csrf": csrf_token(request), "base": href(request, ""), **context}
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)
