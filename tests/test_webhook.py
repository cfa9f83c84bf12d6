"""The campaign's webhook export against a real HTTP receiver (a stand-in event system on 127.0.0.1 that
can fail on cue): every offer arrives, retries back off, a refusal stops the export, and a resumed export
sends exactly what had not arrived; the ledger on both system-store backends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.webhook import Retry, WebhookError, order_offers, send_campaign
from system_db.deliveries import Deliveries
from system_db.store import SystemStore

FAST = Retry(attempts=4, initial=0.01, longest=0.05, timeout=5)


class Receiver:
    """Records every POST (its Idempotency-Key and body); ``script`` maps a chunk number to the statuses its
    successive attempts get (then 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.script: dict[int, list[int]] = {}
        self.headers: dict[int, dict[str, str]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    queue = receiver.script.get(body["chunk"], [])
                    status = queue.pop(0) if queue else 200
                    if status == 200:
                        receiver.received.append((self.headers["Idempotency-Key"], body))
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}" if status == 200 else b"no")

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/campaigns"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def offers(self) -> list[str]:
        """The decision ids received, once per distinct Idempotency-Key (what a receiver that dedupes keeps)."""
        seen: dict[str, dict] = {}
        for key, body in self.received:
            seen.setdefault(key, body)
        return [o["decision_id"] for body in seen.values() for o in body["offers"]]


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Deliveries:
    if request.param == "sqlite":
        return Deliveries(SystemStore(f"sqlite:///{tmp_path / 'rekindle.db'}"))
    return Deliveries(SystemStore(request.getfixturevalue("pg_database_factory")()))


def campaign_offers(n: int = 2500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    types = np.array(["none", "cashback", "free_spins", "reminder"], dtype=object)
    return pd.DataFrame(
        {
            "decision_id": [f"d{i:05d}" for i in range(n)],
            "player_id": rng.permutation(n) + 1,
            "event_type": types[rng.integers(0, 4, n)],
            "reward": rng.choice([0, 5000, 10000], n),
        }
    )


def offered(frame: pd.DataFrame) -> list[str]:
    return sorted(frame.loc[frame["event_type"] != "none", "decision_id"])


def test_every_offer_arrives_once_in_chunks_with_their_keys(receiver: Receiver, ledger: Deliveries) -> None:
    offers = campaign_offers()
    report = send_campaign("batch-1", offers, receiver.url, ledger, chunk_size=300, retry=FAST)
    want = offered(offers)
    assert sorted(receiver.offers()) == want and len(receiver.received) == report.chunks == -(-len(want) // 300)
    keys = [k for k, _ in receiver.received]
    assert keys == [f"batch-1:{i}" for i in range(report.chunks)]  # one POST per chunk, in order, keyed
    bodies = [b for _, b in receiver.received]
    assert all(b["campaign"] == "batch-1" and b["chunks"] == report.chunks for b in bodies)
    assert all(o["event_type"] != "none" and isinstance(o["reward"], int) for b in bodies for o in b["offers"])
    assert (report.sent, report.skipped, report.offers, report.attempts) == (report.chunks, 0, len(want), report.chunks)
    got = ledger.delivered("batch-1", receiver.url)
    assert got is not None and got.done == frozenset(range(report.chunks)) and got.chunk_size == 300
    again = send_campaign("batch-1", offers, receiver.url, ledger, chunk_size=300, retry=FAST)
    assert (again.sent, again.skipped) == (0, report.chunks) and len(receiver.received) == report.chunks


def test_transient_failures_back_off_and_retry(receiver: Receiver, ledger: Deliveries) -> None:
    offers = campaign_offers(800)
    receiver.script = {1: [503, 502, 429]}  # three failures of chunk 1, then it is taken
    waits: list[float] = []
    report = send_campaign("batch-2", offers, receiver.url, ledger, chunk_size=200, retry=FAST, sleep=waits.append)
    assert sorted(receiver.offers()) == offered(offers)
    assert report.attempts == report.chunks + 3 and len(waits) == 3
    assert all(0 < w <= FAST.longest for w in waits)


def test_giving_up_says_so_and_a_resume_sends_the_rest(receiver: Receiver, ledger: Deliveries) -> None:
    offers = campaign_offers(1000)
    receiver.script = {2: [500] * FAST.attempts}  # chunk 2 fails every attempt of the first run
    with pytest.raises(WebhookError, match=r"failed chunk 2 of batch-3 4 times .*chunks delivered: 2 of") as err:
        send_campaign("batch-3", offers, receiver.url, ledger, chunk_size=100, retry=FAST, sleep=lambda _: None)
    assert "resume" in str(err.value)
    assert [k for k, _ in receiver.received] == ["batch-3:0", "batch-3:1"]
    report = send_campaign("batch-3", offers, receiver.url, ledger, chunk_size=100, retry=FAST)
    assert report.skipped == 2 and report.sent == report.chunks - 2
    keys = [k for k, _ in receiver.received]
    assert len(keys) == len(set(keys))  # nothing sent twice
    assert sorted(receiver.offers()) == offered(offers)


def test_a_refusal_stops_at_once_and_names_the_status(receiver: Receiver, ledger: Deliveries) -> None:
    offers = campaign_offers(500)
    receiver.script = {1: [400]}
    with pytest.raises(WebhookError, match=r"refused chunk 1 of batch-4: HTTP 400 'no'"):
        send_campaign("batch-4", offers, receiver.url, ledger, chunk_size=100, retry=FAST)
    assert len(receiver.received) == 1  # no retry of a 4xx
    report = send_campaign("batch-4", offers, receiver.url, ledger, chunk_size=100, retry=FAST)
    assert report.skipped == 1 and sorted(receiver.offers()) == offered(offers)


def test_a_kill_between_answer_and_record_resends_one_chunk_under_its_key(
    receiver: Receiver, ledger: Deliveries
) -> None:
    """The only repeat possible: the chunk whose answer was not recorded, sent again with the same key."""
    offers = campaign_offers(600)

    class KilledError(Exception):
        pass

    real = ledger.record

    def record(campaign: str, url: str, chunk: int, **kw: int) -> None:
        if chunk == 2:
            raise KilledError
        real(campaign, url, chunk, **kw)

    ledger.record = record  # type: ignore[method-assign]
    with pytest.raises(KilledError):
        send_campaign("batch-5", offers, receiver.url, ledger, chunk_size=100, retry=FAST)
    ledger.record = real  # type: ignore[method-assign]
    send_campaign("batch-5", offers, receiver.url, ledger, chunk_size=100, retry=FAST)
    keys = [k for k, _ in receiver.received]
    assert [k for k in set(keys) if keys.count(k) > 1] == ["batch-5:2"] and keys.count("batch-5:2") == 2
    assert sorted(receiver.offers()) == offered(offers)  # a receiver that drops repeated keys has each offer once


def test_a_resume_keeps_the_first_cut_and_refuses_changed_offers(receiver: Receiver, ledger: Deliveries) -> None:
    offers = campaign_offers(700)
    receiver.script = {3: [400]}
    with pytest.raises(WebhookError):
        send_campaign("batch-6", offers, receiver.url, ledger, chunk_size=100, retry=FAST)
    report = send_campaign("batch-6", offers, receiver.url, ledger, chunk_size=250, retry=FAST)  # size ignored
    assert report.skipped == 3 and sorted(receiver.offers()) == offered(offers)
    more = pd.concat([offers, campaign_offers(300, seed=1).assign(decision_id=lambda f: "x" + f["decision_id"])])
    with pytest.raises(WebhookError, match="its offers changed since"):
        send_campaign("batch-6", more, receiver.url, ledger, chunk_size=100, retry=FAST)


def test_bad_arguments_are_named(ledger: Deliveries) -> None:
    with pytest.raises(WebhookError, match="must start with http:// or https://, got 'ftp://x'"):
        send_campaign("b", campaign_offers(10), "ftp://x", ledger)
    with pytest.raises(WebhookError, match="lack the columns \\['decision_id'\\]"):
        order_offers(campaign_offers(10).drop(columns="decision_id"))
