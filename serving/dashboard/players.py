"""The player-preferences and recommendations pages: what re-engaged each segment (measured outcomes, with
intervals) next to what the model now predicts; the latest batch's arm mix per segment; one player's decision
with its reasons and runners-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.errors import RekindleError
from serving import planner
from serving.dashboard import data
from serving.dashboard.site import Site, chart


def preferences_table(history: pd.DataFrame, predicted: pd.DataFrame | None) -> pd.DataFrame:
    """Per segment and arm: the measured re-engagement with its interval, its lift over no offer in the same
    segment, and the model's predicted re-engagement and lift (NaN where one side has no row)."""
    frame = history.copy()
    none = frame[frame["arm"] == "none"].set_index("segment")["rate"]
    frame["lift"] = frame["rate"] - frame["segment"].map(none)
    if predicted is not None and len(predicted):
        p = predicted.rename(
            columns={"p_reengage": "predicted", "lift": "predicted_lift", "net_value": "predicted_net"}
        )
        frame = frame.merge(p, on=["segment", "arm"], how="outer")
    else:
        frame = frame.assign(predicted=np.nan, predicted_lift=np.nan, predicted_net=np.nan)
    return frame.sort_values(["segment", "arm"]).reset_index(drop=True)


def preference_chart(rows: pd.DataFrame, segment: str) -> str:
    seen = rows[rows["decisions"].notna()]
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=seen["arm"], y=seen["rate"], name="re-engaged (measured, 95% interval)",
        error_y={"type": "data", "symmetric": False, "array": seen["high"] - seen["rate"],
                 "arrayminus": seen["rate"] - seen["low"]},
    ))  # fmt: skip
    model = rows[rows["predicted"].notna()]
    fig.add_trace(go.Scatter(x=model["arm"], y=model["predicted"], name="the model's prediction now", mode="markers",
                             marker={"size": 11, "color": "#b42318", "symbol": "diamond"}))  # fmt: skip
    fig.update_layout(title=f"{segment}: share re-engaged within the attribution window by arm",
                      yaxis={"title": "re-engaged", "tickformat": ".0%"},
                      legend={"orientation": "h", "y": -0.3})  # fmt: skip
    return chart(fig, height=380)


def mix_chart(mix: pd.DataFrame) -> str:
    table = mix.pivot_table(index="segment", columns="arm", values="share", fill_value=0.0)
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=list(table.columns), y=list(table.index), colorscale="Blues",
                               zmin=0, zmax=1, hovertemplate="%{y}<br>%{x}: %{z:.0%}<extra></extra>"))  # fmt: skip
    fig.update_layout(title="the latest batch: share of each segment's decisions by arm")
    return chart(fig, height=max(320, 40 * len(table) + 120))


def routes(site: Site) -> list[Route]:
    def model_predictions() -> tuple[pd.DataFrame | None, planner.Sample | None]:
        path = planner.sample_path(site.cfg)
        if not path.is_file():
            return None, None
        sample = planner.load(path)
        return (None if sample is None else planner.predicted_by_segment(sample)), sample

    def preferences(request: Request) -> Response:
        user = site.user(request)
        hist = site.memo("history", None, lambda: data.history_by_segment(site.store))  # fresh within a minute
        path = planner.sample_path(site.cfg)
        pred, sample = site.memo("predicted", path.stat().st_mtime if path.is_file() else None, model_predictions)
        table = preferences_table(hist, pred)
        segments = sorted(table["segment"].dropna().unique())
        segment = request.query_params.get("segment") or (segments[0] if segments else "")
        if segments and segment not in segments:
            raise HTTPException(404, f"unknown segment {segment!r}; expected one of {segments}")
        rows = table[table["segment"] == segment]
        best = (
            table[(table["arm"] != "none") & table["decisions"].notna()]
            .sort_values("lift", ascending=False)
            .groupby("segment", as_index=False)
            .first()
        )
        if pred is not None:
            top = pred[pred["arm"] != "none"].sort_values("lift", ascending=False).groupby("segment").first()
            best["model_best"] = best["segment"].map(top["arm"])
        return site.page(
            request, user, "preferences.html", segments=segments, segment=segment, rows=rows.to_dict("records"),
            best=best.to_dict("records"), sample=sample, chart=preference_chart(rows, segment) if len(rows) else None,
        )  # fmt: skip

    def recommendations(request: Request) -> Response:
        user = site.user(request)
        at, mix = site.memo("mix", data.latest_batch_at(site.store), lambda: data.arm_mix(site.store))
        text = request.query_params.get("player", "").strip()
        player, decided, error = None, [], None
        if text:
            if not (text.isascii() and text.isdecimal()) or len(text) > 18:
                raise HTTPException(422, f"player must be a player id (digits), got {text!r}")
            pid = int(text)
            decided = data.player_decisions(site.store, pid).to_dict("records")
            try:
                player = site.engine().preview(pid)
            except RekindleError as exc:
                error = str(exc)
        return site.page(
            request, user, "recommendations.html", batch_at=at, mix=mix.to_dict("records"),
            mix_chart=mix_chart(mix) if len(mix) else None, asked=text, player=player, decided=decided, error=error,
        )  # fmt: skip

    return [
        Route("/preferences", preferences, name="preferences"),
        Route("/recommendations", recommendations, name="recommendations"),
    ]
