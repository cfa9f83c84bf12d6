"""The campaign planner page: the policy's expected re-engagements, net value and ROI over budgets (the
knapsack's curve, :mod:`serving.planner`), what-if on the margin, a reward cap and event types switched off,
and the plan at one budget exported as CSV."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from cachetools import LRUCache
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving import planner
from serving.dashboard.site import Site, chart
from system_db.overrides import Overrides, merged


class SampleCache:
    """The latest batch's sample, read again only when the file changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.key: tuple[str, float] | None = None
        self._sample: planner.Sample | None = None

    def get(self, path: Path) -> tuple[tuple[str, float] | None, planner.Sample | None]:
        """The sample and the key it was read under (together: a new batch between two reads cannot pair an
        old sample with the new key)."""
        key = (str(path), path.stat().st_mtime) if path.is_file() else None
        with self._lock:
            if key != self.key:
                self._sample, self.key = planner.load(path), key
            return self.key, self._sample


def _number(params: QueryParams, name: str, default: float | None, what: str) -> float | None:
    text = params.get(name, "").replace(",", "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise planner.PlannerError(f"{name} must be {what}, got {text!r}")
    return value


def read_what_if(params: QueryParams, sample: planner.Sample) -> tuple[planner.WhatIf, float | None]:
    """The what-if and budget a request asks for (defaults: the batch's margin and objective, no budget)."""
    margin = _number(params, "margin", sample.margin, "a share in (0, 1], e.g. 0.3")
    cap = _number(params, "reward_cap", None, "a reward in whole KRW")
    budget = _number(params, "budget", None, "an amount in whole KRW")
    what = planner.WhatIf(
        margin=float(margin if margin is not None else sample.margin),
        objective=params.get("objective") or sample.objective,  # type: ignore[arg-type]
        reward_cap=None if cap is None else int(cap),
        disabled_event_types=tuple(params.getlist("off")),
    )
    what.check(sample)
    return what, budget


def curve_chart(points: Any, totals: dict[str, float] | None) -> str:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=points["budget"], y=points["net_value"], name="incremental net value (KRW)",
                             mode="lines+markers"))  # fmt: skip
    fig.add_trace(go.Scatter(x=points["budget"], y=points["reengagements"], name="incremental re-engagements",
                             mode="lines+markers", yaxis="y2"))  # fmt: skip
    if totals is not None:
        fig.add_trace(go.Scatter(x=[totals["cost"]], y=[totals["net_value"]], name="this plan", mode="markers",
                                 marker={"size": 14, "color": "#b42318", "symbol": "diamond"}))  # fmt: skip
    fig.update_layout(title="the policy over budgets (expected reward cost)", xaxis={"title": "budget, KRW"},
                      yaxis={"title": "net value, KRW"}, legend={"orientation": "h", "y": -0.25},
                      yaxis2={"title": "re-engagements", "overlaying": "y", "side": "right"})  # fmt: skip
    return chart(fig, height=380)


def routes(site: Site) -> list[Route]:
    cache = SampleCache()

    def rules() -> Any:
        return merged(site.cfg.serving.policy, Overrides(site.store).read())

    def planned(request: Request) -> tuple[object, planner.Sample, planner.WhatIf, float | None]:
        key, sample = cache.get(planner.sample_path(site.cfg))
        if sample is None:
            raise HTTPException(404, "no batch has run yet: the planner plans on the latest batch's candidates "
                                     "(run `rekindle batch` or `rekindle run`)")  # fmt: skip
        try:
            what, budget = read_what_if(request.query_params, sample)
        except planner.PlannerError as exc:
            raise HTTPException(422, str(exc)) from None
        return key, sample, what, budget

    answers: LRUCache[tuple[object, ...], Any] = LRUCache(maxsize=64)  # a what-if asked again: no numpy
    lock = threading.Lock()

    def remembered(kind: str, sample_key: object, settings: Any, what: planner.WhatIf, budget: float | None,
                   compute: Any) -> Any:  # fmt: skip
        key = (kind, sample_key, settings.model_dump_json(), what, budget)
        with lock:
            if key in answers:
                return answers[key]
        value = compute()
        with lock:
            answers[key] = value
        return value

    def page(request: Request) -> Response:
        user = site.user(request)
        key, sample, what, budget = planned(request)
        settings = rules()
        points = remembered("curve", key, settings, what, None, lambda: planner.curve(sample, settings, what))
        totals, table = (
            remembered("plan", key, settings, what, budget, lambda: planner.plan(sample, settings, what, budget))
            if budget is not None
            else (None, None)
        )
        event_types = sorted(set(sample.arms["event_type"].astype(str)) - {"none"})
        return site.page(
            request, user, "planner.html", sample=sample, what=what, budget=budget, points=points.to_dict("records"),
            totals=totals, table=None if table is None else table.to_dict("records"), event_types=event_types,
            curve=curve_chart(points, totals), query=str(request.query_params),
        )  # fmt: skip

    def export(request: Request) -> Response:
        site.user(request)
        _, sample, what, budget = planned(request)
        _, table = planner.plan(sample, rules(), what, budget)
        table = table.round({"players": 0, "expected_cost": 0, "reengagements": 2, "net_value": 0})
        name = f"plan-{sample.campaign}-{'unlimited' if budget is None else f'{budget:.0f}'}.csv"
        return Response(table.to_csv(index=False), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    return [Route("/planner", page, name="planner"), Route("/planner/export.csv", export, name="planner_export")]
