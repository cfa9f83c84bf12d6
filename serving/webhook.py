"""Send a campaign's offers to an event system's webhook: one POST per chunk, retried with backoff,
resumable without sending anything twice.

The offers are ordered by (event type, player id) and cut into chunks of ``chunk_size``; chunk ``i`` is
POSTed as JSON ``{"campaign", "chunk", "chunks", "offers": [{"decision_id", "player_id", "event_type",
"reward"}, ...]}`` with the header ``Idempotency-Key: <campaign>:<chunk>``. A 2xx answer is recorded in the
ledger (:mod:`system_db.deliveries`) before the next chunk goes; a run that stops (an error, a kill) is
resumed by sending the same campaign again, which skips the recorded chunks.

A connection error, a timeout, 429 or a 5xx is retried with exponential backoff and jitter (honouring
``Retry-After``); any other answer stops the export with the webhook's status and the start of its body.
tenacity does the retrying: its waits, stop conditions and retry predicates are the well-tested
version of the loop one would otherwise write here. A bearer token, if the receiver wants one, comes from
the environment (``REKINDLE_WEBHOOK_TOKEN``), never from the repository.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from core.errors import RekindleError
from core.progress import SILENT, Progress
from system_db.deliveries import Deliveries

OFFER_COLUMNS = ["decision_id", "player_id", "event_type", "reward"]
TOKEN_ENV = "REKINDLE_WEBHOOK_TOKEN"


class WebhookError(RekindleError, RuntimeError):
    """The webhook refused a chunk, or kept failing past the retries."""


class TransientError(Exception):
    """An answer worth trying again (429, 5xx), with the wait the receiver asked for."""

    def __init__(self, status: int, body: str, retry_after: float | None) -> None:
        self.status, self.body, self.retry_after = status, body, retry_after
        super().__init__(f"HTTP {status}: {body}")


@dataclass(frozen=True)
class Retry:
    attempts: int = 6  # per chunk, the first included
    initial: float = 0.5  # seconds before the first retry, doubling up to ``longest``
    longest: float = 30.0
    timeout: float = 30.0  # per request


@dataclass
class DeliveryReport:
    campaign: str
    url: str
    chunks: int
    sent: int  # chunks sent by this run
    skipped: int  # chunks an earlier run had delivered
    offers: int  # offers sent by this run
    attempts: int  # requests made by this run (retries included)
    seconds: float


def order_offers(offers: pd.DataFrame) -> pd.DataFrame:
    """The campaign's offers in the fixed order its chunks are cut in (no-offer rows left out)."""
    missing = [c for c in OFFER_COLUMNS if c not in offers]
    if missing:
        raise WebhookError(f"the offers lack the columns {missing}; expected {OFFER_COLUMNS}")
    out = offers.loc[offers["event_type"] != "none", OFFER_COLUMNS]
    return out.sort_values(["event_type", "player_id"], kind="stable").reset_index(drop=True)


def payload(campaign: str, chunk: int, chunks: int, part: pd.DataFrame) -> dict[str, object]:
    return {
        "campaign": campaign,
        "chunk": chunk,
        "chunks": chunks,
        "offers": [
            {"decision_id": str(d), "player_id": int(p), "event_type": str(e), "reward": int(r)}
            for d, p, e, r in zip(
                part["decision_id"],
                part["player_id"].to_numpy(np.int64),
                part["event_type"],
                part["reward"].to_numpy(np.int64),
                strict=True,
            )
        ],
    }


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: the backoff decides
        return None


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError | httpx.TransportError)


def send_campaign(
    campaign: str,
    offers: pd.DataFrame,
    url: str,
    ledger: Deliveries,
    *,
    chunk_size: int = 1000,
    retry: Retry = Retry(),
    progress: Progress = SILENT,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """POST ``offers`` (decision_id, player_id, event_type, reward; "none" rows are left out) to ``url`` in
    chunks, skipping those the ledger says were delivered."""
    if not url.startswith(("http://", "https://")):
        raise WebhookError(f"the webhook URL must start with http:// or https://, got {url!r}")
    if chunk_size < 1:
        raise WebhookError(f"the chunk size must be at least 1, got {chunk_size}")
    rows = order_offers(offers)
    earlier = ledger.delivered(campaign, url)
    if earlier is not None:
        chunk_size = earlier.chunk_size  # cut as before, or the chunks' numbers would mean other offers
    chunks = max(1, math.ceil(len(rows) / chunk_size)) if len(rows) else 0
    if earlier is not None and earlier.chunks != chunks:
        raise WebhookError(
            f"{campaign} had {earlier.chunks} chunks of {chunk_size} when it was first sent to {url}, and "
            f"{chunks} now: its offers changed since (a replaced batch?); send it under a new campaign"
        )
    done = earlier.done if earlier is not None else frozenset()
    headers = {"Content-Type": "application/json"}
    if os.environ.get(TOKEN_ENV):
        headers["Authorization"] = f"Bearer {os.environ[TOKEN_ENV]}"
    start, sent, offers_sent, attempts = time.perf_counter(), 0, 0, 0
    progress.start("webhook", chunks)
    progress.advance("webhook", len(done), detail=f"{len(done)} delivered before")
    with httpx.Client(timeout=retry.timeout, headers=headers) as client:
        for chunk in range(chunks):
            if chunk in done:
                continue
            part = rows.iloc[chunk * chunk_size : (chunk + 1) * chunk_size]
            body = payload(campaign, chunk, chunks, part)
            key = {"Idempotency-Key": f"{campaign}:{chunk}"}
            tries = 0

            def post(body: dict[str, object] = body, key: dict[str, str] = key) -> httpx.Response:
                nonlocal tries
                tries += 1
                response = client.post(url, json=body, headers=key)
                if response.status_code == 429 or response.status_code >= 500:
                    raise TransientError(response.status_code, response.text[:200], _retry_after(response))
                return response

            def wait(state: RetryCallState) -> float:
                backoff = wait_exponential_jitter(initial=retry.initial, max=retry.longest)(state)
                exc = state.outcome.exception() if state.outcome else None
                asked = exc.retry_after if isinstance(exc, TransientError) and exc.retry_after else 0.0
                return max(backoff, min(asked, retry.longest))

            try:
                response = Retrying(
                    stop=stop_after_attempt(retry.attempts), wait=wait, retry=retry_if_exception(_transient),
                    sleep=sleep, reraise=True,
                )(post)  # fmt: skip
            except (TransientError, httpx.TransportError) as exc:
                raise WebhookError(
                    f"{url} failed chunk {chunk} of {campaign} {tries} times ({str(exc)[:200]}); chunks delivered: "
                    f"{len(done) + sent} of {chunks}. Send the campaign again to resume"
                ) from None
            finally:
                attempts += tries
            if not response.is_success:
                raise WebhookError(
                    f"{url} refused chunk {chunk} of {campaign}: HTTP {response.status_code} "
                    f"{response.text[:200]!r}; chunks delivered: {len(done) + sent} of {chunks}"
                )
            ledger.record(
                campaign, url, chunk, chunks=chunks, chunk_size=chunk_size, offers=len(part), attempts=tries,
                status=response.status_code,
            )  # fmt: skip
            sent += 1
            offers_sent += len(part)
            progress.advance("webhook")
    return DeliveryReport(campaign, url, chunks, sent, len(done), offers_sent, attempts, time.perf_counter() - start)
