"""The system store's serving tables, on SQLite and PostgreSQL for real: the decision log loses and
doubles nothing under concurrent writers, a retried request id returns the first decision, the online
budget is never overrun; API keys are checked by hash and role; overrides are validated and audited."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from core.config import PolicySettings
from system_db.access import AccessError, KeyRing, check
from system_db.decision_log import OFFERED, DecisionLog, new_decision_id, response_json
from system_db.overrides import OverrideError, Overrides
from system_db.store import SystemStore

DAY = datetime(2026, 10, 5, 10, 0)


def row(player: int, *, caller: str = "k1", request_id: str | None = None, cost: float = 0.0) -> dict:
    decision_id = new_decision_id()
    return {
        "decision_id": decision_id, "caller": caller, "request_id": request_id, "player_id": player,
        "decided_at": DAY, "source": "online", "segment": "s", "event_type": "cashback" if cost else "none",
        "reward": 10000 if cost else 0, "propensity": 0.9, "explored": False, "holdout": False, "fallback": False,
        "reason": "test", "expected_cost": cost, "incremental_net_value": 1.0, "incremental_reengage": 0.01,
        "model_version": "m/1", "policy_version": "p-0", "response": response_json({"decision_id": decision_id}),
    }  # fmt: skip


def run_threads(n: int, target) -> list:
    out: list = []
    lock = threading.Lock()

    def work(i: int) -> None:
        got = target(i)
        with lock:
            out.append(got)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_fifty_concurrent_clients_lose_and_double_nothing(empty_db_url: str) -> None:
    """50 clients write 20 decisions each; every request id is sent twice at once (a client's retry). The log
    holds exactly one row per request id, and both calls of a pair answer with the same decision."""
    log = DecisionLog(SystemStore(empty_db_url))

    def client(i: int) -> list[tuple[str, str, bool]]:
        out = []
        for j in range(20):
            rid = f"req-{i}-{j}"
            pair = run_threads(2, lambda _, j=j, rid=rid: log.write(row(i * 100 + j, request_id=rid)))
            out += [(rid, p.row["decision_id"], p.created) for p in pair]
        return out

    answers = [a for chunk in run_threads(50, client) for a in chunk]
    logged = log.read()
    assert len(logged) == 50 * 20 and logged["request_id"].is_unique  # none lost, none doubled
    by_request = {}
    for rid, decision_id, _ in answers:
        by_request.setdefault(rid, set()).add(decision_id)
    assert all(len(ids) == 1 for ids in by_request.values())  # the retry got the first decision
    assert sum(created for _, _, created in answers) == 1000
    assert set(logged["decision_id"]) == {next(iter(v)) for v in by_request.values()}


def test_the_online_budget_is_never_overrun_by_concurrent_offers(empty_db_url: str) -> None:
    log = DecisionLog(SystemStore(empty_db_url))
    results = run_threads(
        40, lambda i: [log.write(row(i * 10 + j, cost=100.0), budget=1_250.0, over_budget="budget") for j in range(5)]
    )
    rows = [r.row for chunk in results for r in chunk]
    offers = [r for r in rows if r["event_type"] != "none"]
    assert len(rows) == 200 and len(offers) == 12  # 12 x 100 <= 1,250 < 13 x 100
    assert log.spent(DAY.date()) == pytest.approx(1_200.0)
    assert {r["reason"] for r in rows if r["event_type"] == "none"} == {"budget"}
    assert len(log.read()) == 200  # the refused ones are logged too, as no offer


def test_last_offers_are_per_player_and_ignore_no_offer(empty_db_url: str) -> None:
    log = DecisionLog(SystemStore(empty_db_url))
    log.write(row(1, cost=100.0))
    log.write(row(2))
    assert log.last_offers([1, 2, 3]) == {1: DAY}


def test_the_last_offer_is_read_from_the_offers_index_also_on_a_log_made_before_it(empty_db_url: str) -> None:
    """A capped player's every call logs a no-offer row: the frequency cap's query must not walk them. The
    partial index of offers is created on an existing log that lacks it, and the query is planned on it."""
    import sqlalchemy as sa

    store = SystemStore(empty_db_url)
    log = DecisionLog(store)
    log.write_all([row(7, cost=100.0)] + [row(7) for _ in range(50)])
    qualified = f'"{store.schema}".' if store.schema else ""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX {qualified}decisions_offers")  # a log from before the index
    log = DecisionLog(SystemStore(empty_db_url))
    assert "decisions_offers" in {i["name"] for i in sa.inspect(log.engine).get_indexes("decisions", store.schema)}
    assert log.last_offers([7, 8]) == {7: DAY}
    if log.engine.dialect.name == "sqlite":  # the planner picks the partial index for the query as written
        t = log.table
        query = sa.select(t.c.player_id, sa.func.max(t.c.decided_at)).where(t.c.player_id.in_([7]), OFFERED)
        sql = str(query.group_by(t.c.player_id).compile(log.engine, compile_kwargs={"literal_binds": True}))
        with log.engine.connect() as conn:
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING INDEX decisions_offers" in plan, plan


def test_a_log_from_before_the_policy_arm_column_gets_it_and_keeps_its_rows(empty_db_url: str) -> None:
    import sqlalchemy as sa

    store = SystemStore(empty_db_url)
    DecisionLog(store).write_all([row(1), row(2, cost=100.0)])
    qualified = f'"{store.schema}".' if store.schema else ""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {qualified}decisions DROP COLUMN policy_arm")  # a log from before it
    log = DecisionLog(SystemStore(empty_db_url))
    assert "policy_arm" in {c["name"] for c in sa.inspect(log.engine).get_columns("decisions", store.schema)}
    log.write_all([row(3) | {"policy_arm": "cashback@10000"}])
    got = log.read().set_index("player_id")["policy_arm"]
    assert got.loc[3] == "cashback@10000" and got.loc[[1, 2]].isna().all() and len(got) == 3
    DecisionLog(SystemStore(empty_db_url))  # a second start finds it there


def test_api_keys_are_stored_hashed_and_checked_with_their_role(empty_db_url: str) -> None:
    ring = KeyRing(SystemStore(empty_db_url))
    key, plain = ring.create("crm", "caller")
    _, plain_admin = ring.create("ops", "admin")
    hashes = ring.hashes()
    assert plain not in str(ring.list()) and plain.split("_")[-1] not in str(hashes)
    assert check(plain, hashes) == key and check(plain_admin, hashes).role == "admin"
    assert check(plain[:-1] + ("A" if plain[-1] != "A" else "B"), hashes) is None
    assert check("nonsense", hashes) is None and check(None, hashes) is None
    ring.revoke(key.key_id)
    assert check(plain, ring.hashes()) is None
    with pytest.raises(AccessError, match="unknown role 'root'"):
        ring.create("x", "root")
    with pytest.raises(AccessError, match=f"no active key with id '{key.key_id}'"):
        ring.revoke(key.key_id)


def test_overrides_are_validated_and_audited(empty_db_url: str) -> None:
    o = Overrides(SystemStore(empty_db_url))
    base = PolicySettings()
    s = o.set("exploration", 0.2, who="ana", base=base)
    assert s.exploration == 0.2 and o.read() == {"exploration": 0.2}
    o.set("exploration", 0.1, who="bo", base=base)
    o.set("pins", {"seg": "cashback@10000"}, who="bo", base=base)
    with pytest.raises(OverrideError, match="exploration"):
        o.set("exploration", 1.5, who="eve", base=base)
    with pytest.raises(OverrideError, match="unknown setting 'explore'"):
        o.set("explore", 0.1, who="eve", base=base)
    o.set("exploration", None, who="ana", base=base)
    audit = o.history()
    assert list(audit["who"]) == ["ana", "bo", "bo", "ana"]  # the refused changes wrote nothing
    assert list(audit["before"].head(2)) == [None, "0.2"] and list(audit["after"].head(2)) == ["0.2", "0.1"]
    assert audit["after"].iloc[-1] is None and o.read() == {"pins": {"seg": "cashback@10000"}}
    assert o.version() == str(audit["id"].max())
