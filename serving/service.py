"""The online service: BentoML serving a FastAPI app whose handlers are the service's own methods.

Started by ``rekindle serve`` (``bentoml serve serving.service:Rekindle``); the home and configuration
come from ``REKINDLE_HOME`` and ``REKINDLE_CONFIG``. Each worker holds one :class:`serving.engine.Engine`.

Endpoints (docs/serving.md, OpenAPI in docs/openapi.json):

- ``POST /v1/recommendations`` one player; ``POST /v1/recommendations:batch`` up to 1,000;
- ``GET /v1/segments/{segment}/recommendation`` a segment's best arms with expected values;
- ``GET /v1/overrides``, ``PUT /v1/overrides/{field}`` the marketers' overrides (admin);
- ``GET /health`` (alive), ``GET /ready`` (model loaded; what is degraded), ``GET /metrics`` (Prometheus,
  BentoML's request histograms plus decisions by arm, fallbacks by segment and errors).

Every call but /health, /ready and /metrics needs an API key (``Authorization: Bearer rk_...`` or
``X-API-Key``): missing or unknown 401, wrong role 403.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.config import load_config
from core.errors import RekindleError
from serving.batcher import Batcher
from serving.dashboard.app import Dashboard
from serving.engine import Ask, Engine, UnknownPlayersError, UnknownSegmentError
from system_db.access import Key, check
from system_db.overrides import OverrideError

API_VERSION = "1"
DECISION_ROUTES = ["/v1/recommendations", "/v1/recommendations:batch"]
# a call not answered by then gets 504 and is dropped undecided if still queued. BentoML keeps a timer per call
# for this long: a longer timeout only keeps more of them alive (1,000 players with reasons take ~3 s)
CALL_TIMEOUT_S = 10
app = FastAPI(
    title="Rekindle recommendations",
    version=API_VERSION,
    description="Which re-engagement event and reward to send a dormant player, or nothing. See docs/serving.md.",
    # FastAPI's own OpenTelemetry spans and metrics find BentoML's tracer and would run on every call: BentoML
    # already measures the calls (Prometheus) and traces them when an exporter is configured
    telemetry={"tracing": False, "metrics": False, "logs": False},
)


class RecommendationRequest(BaseModel):
    player_id: int = Field(ge=0, le=2**63 - 1, description="The platform's player id")
    request_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The caller's id of this request: a retry with the same id returns the same decision",
    )
    explain: bool = Field(
        False,
        description="Whether an offer carries its reasons: the top feature contributions (TreeSHAP; adds a few ms)",
    )


class BatchRequest(BaseModel):
    requests: list[RecommendationRequest] = Field(min_length=1, max_length=1000)
    explain: bool = Field(
        False, description="Whether every offer carries its reasons (as a request's own explain does; ~2 ms a player)"
    )


class Expected(BaseModel):
    incremental_reengage: float
    p_reengage_no_offer: float | None
    cost: int
    incremental_net_value: int
    roi: float | None


class RunnerUpExpected(BaseModel):
    incremental_reengage: float
    cost: int
    incremental_net_value: int
    roi: float | None


class RunnerUp(BaseModel):
    arm: str
    expected_gain: float
    lost_by: float = Field(description="How much less expected gain than the chosen arm (why it lost)")
    expected: RunnerUpExpected
    confidence: float | None


class Reason(BaseModel):
    feature: str
    value: float | str | None = Field(description="The feature's value in the offer's model row")
    effect: float = Field(description="Contribution to the log-odds of re-engaging: offer minus no offer (TreeSHAP)")
    direction: str = Field(description="raises or lowers")


class Decision(BaseModel):
    decision_id: str
    player_id: int
    segment: str
    event_type: str
    reward: int = Field(description="KRW; 0 with event_type 'none' (no offer)")
    offer: bool
    expected: Expected
    confidence: float | None = Field(
        description="P(the decision is right in sign) under the bootstrap ensemble's spread; null when the "
        "model did not judge (a rule or a segment-level decision)"
    )
    reasons: list[Reason] = Field(
        description="Why the offer: its top feature contributions (asked with explain; empty for no offer)"
    )
    runners_up: list[RunnerUp]
    propensity: float = Field(description="The probability the policy had of choosing this arm")
    explored: bool
    holdout: bool
    experiment: str | None = Field(None, description="The experiment running when the decision was made")
    variant: str | None = Field(None, description="The player's variant in it (policy, random, holdout, ...)")
    fallback: bool = Field(description="A segment-level decision: the player's features could not be read")
    reason: str
    model_version: str
    policy_version: str
    decided_at: str
    request_id: str | None


class BatchResponse(BaseModel):
    decisions: list[Decision]


class OverrideBody(BaseModel):
    value: Any = Field(description="The new value of the setting (null clears the override)")


# the two ways to send a key, as the OpenAPI document declares them; :func:`_key` reads the headers itself
# (FastAPI's security dependencies would be two more dependencies to resolve on every call, ~5% of a worker)
KEY_SCHEMES = {
    "APIKeyHeader": {"type": "apiKey", "description": "An API key (rekindle keys create)", "in": "header",
                     "name": "X-API-Key"},
    "HTTPBearer": {"type": "http", "description": "The same key as a bearer token", "scheme": "bearer"},
}  # fmt: skip
KEYED: dict[str, Any] = {"security": [{name: []} for name in KEY_SCHEMES]}  # a route's openapi_extra: it needs a key


def _openapi() -> dict[str, Any]:
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        doc.setdefault("components", {})["securitySchemes"] = KEY_SCHEMES
        app.openapi_schema = doc
    return app.openapi_schema


app.openapi = _openapi  # type: ignore[method-assign]
# the marketers' dashboard (signed-in users, not API keys): serving/dashboard, docs/dashboard.md
app.mount(
    "/dashboard",
    Dashboard(
        lambda: load_config(os.environ.get("REKINDLE_CONFIG") or None),
        engine=lambda: s.engine if (s := getattr(app.state, "service", None)) is not None else None,
    ),
)


async def _key(request: Request) -> Key:
    given = request.headers.get("x-api-key")
    if not given:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        given = credentials.strip() if scheme.lower() == "bearer" else None
    if not given:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer rk_...' or 'X-API-Key'")
    key = check(given, _service(request).engine.key_hashes())
    if key is None:
        raise HTTPException(401, "unknown or revoked API key")
    return key


async def _admin(key: Annotated[Key, Depends(_key)]) -> Key:
    if key.role != "admin":
        raise HTTPException(403, f"key {key.key_id} has role {key.role!r}; this call needs 'admin'")
    return key


def _service(request: Request) -> Rekindle:
    """The worker's service instance. The routes are plain functions that find it here, not methods of the
    class: BentoML gives a method its ``self`` through a synchronous dependency, which FastAPI runs on a pool
    thread, one hop per call."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise HTTPException(503, "the service is starting: no model is loaded yet")
    return service  # type: ignore[no-any-return]


@bentoml.service(
    name="rekindle",
    workers=int(os.environ.get("REKINDLE_WORKERS", "2")),
    traffic={"timeout": CALL_TIMEOUT_S},
    logging={"access": {"enabled": os.environ.get("REKINDLE_ACCESS_LOG") == "1"}},  # a line per call costs ~15%
    # BentoML wraps every call in an OpenTelemetry span; with no exporter configured the decision routes skip it
    tracing={} if os.environ.get("REKINDLE_TRACE_DECISIONS") == "1" else {"excluded_urls": DECISION_ROUTES},
)
@bentoml.asgi_app(app, path="/")
class Rekindle:
    def __init__(self) -> None:
        cfg = load_config(os.environ.get("REKINDLE_CONFIG") or None)
        self.engine = Engine(cfg)
        self.batcher = Batcher(self.engine.recommend)  # concurrent calls share one pass through the engine
        app.state.service = self
        self.decisions = bentoml.metrics.Counter(
            name="rekindle_decisions", documentation="Decisions by arm", labelnames=["arm", "fallback", "explored"]
        )
        self._decided: dict[tuple[str, str, str], Any] = {}  # the counter of each (arm, fallback, explored)
        self.errors = bentoml.metrics.Counter(
            name="rekindle_errors", documentation="Failed calls by status", labelnames=["status"]
        )
        self.fallbacks = bentoml.metrics.Counter(
            name="rekindle_fallbacks",
            documentation="Segment-level decisions: the player's features could not be read",
            labelnames=["segment"],
        )

    def _count(self, decisions: list[dict[str, Any]]) -> None:
        for d in decisions:
            arm = "none" if d["event_type"] == "none" else f"{d['event_type']}@{d['reward']}"
            labels = (arm, str(d["fallback"]), str(d["explored"]))
            counter = self._decided.get(labels)
            if counter is None:  # prometheus_client's labels() costs more than the increment
                counter = self._decided[labels] = self.decisions.labels(*labels)
            counter.inc()
            if d["fallback"]:
                self.fallbacks.labels(segment=d["segment"]).inc()

    async def decide(self, items: list[RecommendationRequest], caller: Key, *, explain: bool) -> list[dict[str, Any]]:
        """The engine's decisions for these requests (through the batcher), counted; HTTP errors for unknown
        players (404) and for a decision that could not be made or logged (503)."""
        asked = [Ask(r.player_id, r.request_id, caller.key_id, explain or r.explain) for r in items]
        out = await self.batcher.asubmit(asked, timeout=CALL_TIMEOUT_S)
        unknown = sorted({i for o in out if isinstance(o, UnknownPlayersError) for i in o.ids})
        if unknown:
            self.errors.labels(status="404").inc()
            raise HTTPException(404, str(UnknownPlayersError(unknown)))
        failed = next((o for o in out if isinstance(o, BaseException)), None)
        if failed is not None:
            self.errors.labels(status="503").inc()
            raise HTTPException(503, str(failed) if isinstance(failed, RekindleError) else "the decision failed")
        decisions = [o for o in out if isinstance(o, dict)]
        self._count(decisions)
        return decisions


@app.post("/v1/recommendations", response_model=Decision, responses={404: {}, 401: {}, 403: {}}, openapi_extra=KEYED)
async def recommend(request: Request, body: RecommendationRequest, key: Annotated[Key, Depends(_key)]) -> JSONResponse:
    """The decision for one player: event type and reward (or none), expected values, reasons."""
    decided = await _service(request).decide([body], key, explain=body.explain)
    return JSONResponse(decided[0])  # built by the engine: no second validation


@app.post(
    "/v1/recommendations:batch",
    response_model=BatchResponse,
    responses={404: {}, 401: {}, 403: {}},
    openapi_extra=KEYED,
)
async def recommend_batch(request: Request, body: BatchRequest, key: Annotated[Key, Depends(_key)]) -> JSONResponse:
    """Decisions for up to 1,000 players, in the order asked."""
    return JSONResponse({"decisions": await _service(request).decide(body.requests, key, explain=body.explain)})


@app.get("/v1/segments/{segment}/recommendation", responses={404: {}, 401: {}, 403: {}}, openapi_extra=KEYED)
def segment(request: Request, segment: str, key: Annotated[Key, Depends(_key)]) -> dict[str, Any]:
    """A segment's best arms by mean expected gain over a sample of its candidates."""
    try:
        return _service(request).engine.segment_recommendation(segment)
    except UnknownSegmentError as exc:
        raise HTTPException(404, str(exc)) from None


@app.get("/v1/overrides", responses={401: {}, 403: {}}, openapi_extra=KEYED)
def overrides(request: Request, key: Annotated[Key, Depends(_admin)]) -> dict[str, Any]:
    """The settings in force, the overrides behind them, and the audit trail."""
    e = _service(request).engine
    e.poll(force=True)
    history = e.overrides.history().tail(50)
    return {
        "settings": e.settings.model_dump(),
        "overrides": e.overrides.read(),
        "policy_version": e.policy_version,
        "audit": history.astype(object).where(history.notna(), None).to_dict("records"),
    }


@app.put("/v1/overrides/{field}", responses={401: {}, 403: {}, 422: {}}, openapi_extra=KEYED)
def set_override(
    request: Request, field: str, body: OverrideBody, key: Annotated[Key, Depends(_admin)]
) -> dict[str, Any]:
    """Override one policy setting (``value`` null clears it); in force in every worker within seconds."""
    from serving.policy import PolicyError, check_settings
    from system_db.overrides import merged

    e = _service(request).engine
    try:
        if e.model is not None:
            check_settings(merged(e.settings, {field: body.value}) if body.value is not None else e.settings,
                           e.model.scorer.arms)  # fmt: skip
        settings = e.overrides.set(field, body.value, who=f"{key.name} ({key.key_id})", base=e.cfg.serving.policy)
    except (OverrideError, PolicyError) as exc:
        raise HTTPException(422, str(exc)) from None
    e.poll(force=True)
    return {"field": field, "settings": settings.model_dump(), "policy_version": e.policy_version}


@app.get("/health")
async def health() -> dict[str, str]:
    """Alive."""
    return {"status": "ok"}


@app.get("/ready", responses={503: {}})
async def ready(request: Request) -> JSONResponse:
    """Ready to decide (a model is loaded), and what is degraded."""
    state = _service(request).engine.readiness()
    return JSONResponse(state, status_code=200 if state["ready"] else 503)
