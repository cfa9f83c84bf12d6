"""The overview, experiments, model-health and adjustments pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from core.config import Config
from serving.dashboard import data
from serving.dashboard.site import Site, chart, href
from serving.policy import PolicyError
from system_db.overrides import FIELDS, OverrideError, Overrides, merged
from system_db.store import SystemStore
from system_db.users import User


def check_override(cfg: Config, store: SystemStore, field: str, value: Any) -> None:
    """Refuse an override the served model cannot follow (:func:`serving.policy.check_settings`): the service
    would keep its old settings and mark itself degraded until it is mended. Without a served model only the
    settings' own checks apply (as in the API)."""
    from serving.policy import check_settings

    arms = data.served_arms(cfg)
    if arms is not None and value is not None:
        check_settings(merged(cfg.serving.policy, {**Overrides(store).read(), field: value}), arms)


def parse_value(text: str) -> Any:
    """A setting's value as typed: JSON (numbers, lists, mappings), else a bare word; empty clears it."""
    text = text.strip()
    if text == "":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def base_chart(trend: pd.DataFrame) -> str | None:
    """The dormant players per segment over the latest segmentations (a bar chart when there is one)."""
    if trend.empty:
        return None
    if trend["as_of"].nunique() == 1:
        bars = go.Figure(go.Bar(x=trend["players"], y=trend["segment"], orientation="h"))
        return chart(bars.update_layout(title="dormant players by segment", yaxis={"autorange": "reversed"}))
    fig = go.Figure()
    for segment, rows in trend.groupby("segment", sort=True):
        fig.add_trace(go.Scatter(x=rows["as_of"], y=rows["players"], name=str(segment), mode="lines+markers"))
    return chart(fig.update_layout(title="dormant players by segment over the segmentations"), height=380)


def campaign_chart(campaigns: pd.DataFrame) -> str | None:
    """Re-engagement of the offered against the held out, per measured campaign."""
    measured = campaigns[campaigns["offers_measured"] > 0].iloc[::-1]
    if measured.empty:
        return None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=measured["at"], y=measured["offered_rate"], name="offered", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=measured["at"], y=measured["holdout_rate"], name="held out (no offer)",
                             mode="lines+markers"))  # fmt: skip
    fig.update_layout(title="share re-engaged per campaign", yaxis={"tickformat": ".0%"})
    return chart(fig)


def forest_chart(summary: dict[str, Any]) -> str | None:
    """Each primary comparison's difference with its 95% interval, a panel per metric (their scales differ),
    green where significant after correction."""
    from plotly.subplots import make_subplots

    rows = [c for c in summary.get("comparisons", []) if c.get("primary")
            and None not in (c.get("effect"), c.get("effect_lower"), c.get("effect_upper"))]  # fmt: skip
    if not rows:
        return None
    metrics = list(dict.fromkeys(c["metric"] for c in rows))
    fig = make_subplots(rows=len(metrics), cols=1, subplot_titles=metrics, vertical_spacing=0.25 / len(metrics))
    for i, metric in enumerate(metrics, start=1):
        mine = [c for c in rows if c["metric"] == metric]
        fig.add_trace(go.Scatter(
            x=[c["effect"] for c in mine], y=[f"{c['treatment']} vs {c['control']}" for c in mine], mode="markers",
            marker={"size": 10, "color": ["#2f855a" if c["significant"] else "#7b8794" for c in mine]},
            error_x={"type": "data", "symmetric": False, "array": [c["effect_upper"] - c["effect"] for c in mine],
                     "arrayminus": [c["effect"] - c["effect_lower"] for c in mine]},
        ), row=i, col=1)  # fmt: skip
        fig.add_vline(x=0, line_color="#1f2933", row=i, col=1)  # type: ignore[arg-type]
    fig.update_layout(title="difference against the control, 95% interval (green: significant after correction)",
                      showlegend=False)  # fmt: skip
    return chart(fig, height=140 + 110 * len(metrics), top=70)


def roi_chart(roi: pd.DataFrame) -> str | None:
    """Realised against predicted incremental net value per offer over the feedback runs, with the realised
    value's 95% interval."""
    if roi.empty:
        return None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=roi["measured_at"], y=roi["predicted"], name="predicted", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=roi["measured_at"], y=roi["realised"], name="realised (95% interval)",
                             mode="lines+markers", error_y={"type": "data", "array": 1.96 * roi["se"]}))  # fmt: skip
    fig.update_layout(title="incremental net value per offer: realised against predicted (KRW)")
    return chart(fig)


def overview_figures(site: Site) -> tuple[pd.DataFrame, str | None, tuple[Any, pd.DataFrame], pd.DataFrame]:
    """The overview's aggregates (the dormant base, its trend, the latest batch, the recent campaigns), each
    computed again only when a segmentation or a batch is added, or a minute has passed. Called once when the
    dashboard starts, so its first visitor does not wait for them."""
    seg_at, batch_at = data.latest_segmentation_at(site.store), data.latest_batch_at(site.store)
    segments = site.memo("segments", seg_at, lambda: data.dormant_by_segment(site.store))
    trend = site.memo("trend", seg_at, lambda: base_chart(data.dormant_trend(site.store)))
    batch = site.memo("batch", batch_at, lambda: data.latest_batch_by_arm(site.store))
    campaigns = site.memo("campaigns", batch_at, lambda: data.recent_campaigns(site.store))
    return segments, trend, batch, campaigns


def routes(site: Site) -> list[Route]:
    def overview(request: Request) -> Response:
        user = site.user(request)
        segments, trend, (at, arms), campaigns = overview_figures(site)
        settings = merged(site.cfg.serving.policy, Overrides(site.store).read())
        today = datetime.now(UTC).date()
        spend = {"daily_budget": settings.daily_budget, "today": data.spent_on(site.store, today), "day": today}
        return site.page(request, user, "overview.html", segments=segments.to_dict("records"), batch_at=at,
                         arms=arms.to_dict("records"), segments_chart=trend,
                         campaigns=campaigns.to_dict("records"), campaigns_chart=campaign_chart(campaigns),
                         spend=spend)  # fmt: skip

    def adjustments_page(request: Request, user: User, error: str | None = None) -> Response:
        o = Overrides(site.store)
        audit = o.history().tail(50).iloc[::-1].to_dict("records")
        return site.page(request, user, "adjustments.html", 422 if error else 200, overrides=o.read(),
                         fields=list(FIELDS), audit=audit, error=error)  # fmt: skip

    def adjustments(request: Request) -> Response:
        return adjustments_page(request, site.user(request))

    async def adjust(request: Request) -> Response:
        user = site.user(request)
        form = await site.form(request, user, "marketer")
        field, value = form.get("field", ""), parse_value(form.get("value", ""))
        try:  # refused as the API refuses it (an arm or event type the served model cannot send, too)
            # the served model's arms: loaded from the registry (seconds, then kept), off the event loop
            await run_in_threadpool(check_override, site.cfg, site.store, field, value)
            Overrides(site.store).set(field, value, who=f"{user.name} (dashboard)", base=site.cfg.serving.policy)
        except (OverrideError, PolicyError) as exc:
            return adjustments_page(request, user, str(exc))
        return RedirectResponse(href(request, "/adjustments"), status_code=303)

    def experiments(request: Request) -> Response:
        user = site.user(request)
        rows = []
        batch_at = data.latest_batch_at(site.store)
        for e in data.experiments(site.store).to_dict("records"):
            name, shares = str(e["name"]), dict(e["shares"])
            table, p = site.memo(f"exposures:{name}", batch_at, partial(data.exposures, site.store, name, shares))
            report = site.cfg.path("experiments", str(e["name"]), "report.html").is_file()
            summary = data.experiment_summary(site.cfg, str(e["name"]))
            rows.append({**e, "exposures": table.to_dict("records"), "srm": p, "report": report, "summary": summary,
                         "forest": forest_chart(summary) if summary else None})  # fmt: skip
        return site.page(request, user, "experiments.html", experiments=rows)

    def experiment_report(request: Request) -> Response:
        site.user(request)
        name = request.path_params["name"]
        if name not in set(data.experiments(site.store)["name"]):  # only a known experiment's own report: no paths
            raise HTTPException(404, f"no experiment named {name!r}")
        path = site.cfg.path("experiments", name, "report.html")
        if not path.is_file():
            raise HTTPException(404, f"experiment {name!r} has no report yet: run `rekindle experiment report {name}`")
        return FileResponse(path, media_type="text/html")

    def health(request: Request) -> Response:
        user = site.user(request)
        runs, events = data.monitor_runs(site.store), data.model_events(site.store)
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
        roi = data.roi_over_time(site.store)
        return site.page(request, user, "health.html", models=data.served_models(site.cfg), runs_chart=figure,
                         runs=runs.iloc[::-1].to_dict("records"), events=events.to_dict("records"),
                         roi_chart=roi_chart(roi), reports=data.drift_reports(site.cfg))  # fmt: skip

    def drift_report(request: Request) -> Response:
        site.user(request)
        name = request.path_params["name"]
        if name not in {str(r["name"]) for r in data.drift_reports(site.cfg, last=10_000)}:  # listed files only
            raise HTTPException(404, f"no monitoring report named {name!r}")
        return FileResponse(site.cfg.path("monitor", name), media_type="text/html")

    return [
        Route("/", overview, name="overview"),
        Route("/adjustments", adjustments, methods=["GET"], name="adjustments"),
        Route("/adjustments", adjust, methods=["POST"], name="adjust"),
        Route("/experiments", experiments, name="experiments"),
        Route("/experiments/{name}/report", experiment_report, name="experiment_report"),
        Route("/health", health, name="health"),
        Route("/health/reports/{name}", drift_report, name="drift_report"),
    ]
