"""The bare Starlette app the serving benchmark compares BentoML with: the same engine (feature read,
scoring, policy, decision log write) behind one plain route, no BentoML, no FastAPI, no auth dependency
(the key is still checked). Run by benchmarks/serving_load.py with uvicorn:

    REKINDLE_HOME=var uvicorn benchmarks.bare_app:app --workers 2 --port 3200
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.config import load_config
from serving.batcher import Batcher
from serving.engine import Ask, Engine
from system_db.access import check

engine = Engine(load_config(os.environ.get("REKINDLE_CONFIG") or None))
batcher = Batcher(engine.recommend)


async def recommend(request: Request) -> JSONResponse:
    key = check(request.headers.get("x-api-key"), engine.key_hashes())
    if key is None:
        return JSONResponse({"detail": "unknown or revoked API key"}, status_code=401)
    body = await request.json()
    asked = [Ask(int(body["player_id"]), body.get("request_id"), key.key_id)]
    decision = (await batcher.asubmit(asked, timeout=60))[0]  # as the service's handlers wait for it
    if isinstance(decision, BaseException):
        return JSONResponse({"detail": str(decision)}, status_code=404)
    return JSONResponse(decision)


async def ready(request: Request) -> JSONResponse:
    return JSONResponse(engine.readiness())


app = Starlette(routes=[Route("/v1/recommendations", recommend, methods=["POST"]), Route("/ready", ready)])
