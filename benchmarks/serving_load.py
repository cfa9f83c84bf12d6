"""The recommendation API under load, generated outside the service process.

    .venv/bin/python -m benchmarks.serving_load --home var            # a home `rekindle run` built

1. one client: sequential POST /v1/recommendations, each player asked once (its features read from the
   online store, not the cache), then the same players again (cached); p50 / p99 seen by the client;
2. open loop: an asyncio client that schedules requests on a clock at --rate per second for --seconds and
   measures each from its scheduled time (no coordinated omission); p50 / p99, late starts, errors, and the
   decision log counted afterwards: every answered request id logged once;
3. saturation: wrk (closed loop, --connections) against the BentoML service and a bare Starlette app running
   the same engine (benchmarks/bare_app.py), both up at once and loaded in turns (--rounds); the ratio of
   their mean throughputs;
4. where the time goes: a profile of the engine in this process.

The single client runs twice: against a server with ``serving.prefetch`` off (every call reads the player's
features from the online store: the cold path) and against the default server once its background
prefetch has read every candidate ahead (the path a dormant candidate takes in production).

wrk comes from Debian; the script installs it with apt-get when it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
REKINDLE = str(ROOT / ".venv" / "bin" / "rekindle")
UVICORN = str(ROOT / ".venv" / "bin" / "uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get install -y wrk) ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def start(args: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen:
    out = log.open("w")
    proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    stop(proc)
    sys.exit(f"{args[0]} did not start:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def one_client(url: str, key: str, players: list[int]) -> dict[str, float]:
    """Each player asked once (first), then again (cached), then a third of them with ``explain`` (reasons)."""
    out: dict[str, float] = {}
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as c:
        passes = (("first", players, False), ("cached", players, False), ("explained", players[::3], True))
        for label, ids, explain in passes:
            lat = []
            for p in ids:
                t0 = time.perf_counter()
                r = c.post("/v1/recommendations", json={"player_id": int(p), "explain": explain})
                lat.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
            out[f"{label}_p50_ms"], out[f"{label}_p99_ms"] = pct(lat, 50), pct(lat, 99)
    return out


async def open_loop(url: str, key: str, players: list[int], rate: float, seconds: float, tag: str) -> dict:
    n = int(rate * seconds)
    lat: list[float] = []
    late = errors = 0
    answered: list[str] = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=30, limits=limits) as c:
        start = time.perf_counter() + 0.5

        async def one(i: int) -> None:
            nonlocal late, errors
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if time.perf_counter() - due > 0.010:
                late += 1
            rid = f"{tag}-{i}"
            try:
                r = await c.post(
                    "/v1/recommendations", json={"player_id": int(players[i % len(players)]), "request_id": rid}
                )
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            lat.append(time.perf_counter() - due)
            if ok:
                answered.append(rid)
            else:
                errors += 1

        await asyncio.gather(*(one(i) for i in range(n)))
    return {"requests": n, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "late_starts": late, "errors": errors,
            "answered": answered}  # fmt: skip


def wrk(url: str, key: str, players: list[int], connections: int, seconds: int) -> dict[str, float | str]:
    ids = ",".join(str(int(p)) for p in players[:5000])
    script = Path(tempfile.mkdtemp(prefix="wrk-")) / "post.lua"
    script.write_text(
        f"""
ids = {{{ids}}}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "{key}"
request = function()
  return wrk.format(nil, "/v1/recommendations", nil, '{{"player_id": ' .. ids[math.random(#ids)] .. '}}')
end
"""
    )
    res = subprocess.run(
        [ensure_wrk(), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    text = res.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", text)
        if m is None:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {"rps": rps, "p50_ms": ms("50%"), "p99_ms": ms("99%"), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else "none"}  # fmt: skip


def profile(home: Path, players: list[int]) -> str:
    from core.config import load_config
    from serving.engine import Ask, Engine

    e = Engine(load_config(home=home))
    e.settings = e.settings.model_copy(update={"frequency_cap_days": 0})
    for p in players[:30]:
        e.recommend([Ask(p, None, "profile")])
    pr = cProfile.Profile()
    pr.enable()
    for p in players[30:330]:
        e.recommend([Ask(p, None, "profile")])
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(
        r"serving|scoring|features/online|decision_log|matching", 25
    )
    return buf.getvalue()


def config_copy(config: Path | None, to: Path, **serving: object) -> Path:
    """A copy of the configuration directory with some ``serving`` settings changed."""
    import yaml

    shutil.copytree(config or ROOT / "configs", to)
    raw = yaml.safe_load((to / "rekindle.yaml").read_text())
    raw.setdefault("serving", {}).update(serving)
    (to / "rekindle.yaml").write_text(yaml.safe_dump(raw))
    return to


def wait_prefetched(url: str, candidates: int, timeout: float = 1800) -> float:
    """Seconds until four readings of /ready in a row (so, most likely, both workers) report every candidate."""
    t0 = time.monotonic()
    full = 0
    while time.monotonic() - t0 < timeout:
        state = httpx.get(url + "/ready", timeout=10).json()
        full = full + 1 if state["cache"]["prefetched"] >= candidates else 0
        if full >= 4:
            return time.monotonic() - t0
        time.sleep(1)
    sys.exit(f"the prefetch did not finish in {timeout:.0f} s")


def cli(home: Path, cfg_args: list[str], env: dict[str, str], *args: str) -> str:
    cmd = [REKINDLE, "--home", str(home), *cfg_args, *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout


def open_loop_phase(url: str, key: str, players: list[int], args: argparse.Namespace, engine: sa.Engine,
                    results: dict[str, object], table: str) -> None:  # fmt: skip
    before = pd.read_sql(f"SELECT count(*) AS n FROM {table}", engine)["n"].iloc[0]
    tag = f"open-{int(time.time())}"
    loop = asyncio.run(open_loop(url, key, players, args.rate, args.seconds, tag))
    query = sa.text(f"SELECT request_id FROM {table} WHERE request_id LIKE :tag")
    logged = pd.read_sql(query, engine, params={"tag": f"{tag}-%"})["request_id"]
    answered = loop.pop("answered")
    loop["logged"] = len(logged)
    loop["answered_not_logged"] = len(set(answered) - set(logged))
    loop["logged_twice"] = int(logged.duplicated().sum())
    loop["decisions_added"] = int(pd.read_sql(f"SELECT count(*) AS n FROM {table}", engine)["n"].iloc[0] - before)
    results["open loop"] = loop
    print("open loop:", loop, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--one-client", type=int, default=1000, help="players asked by the single client")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--wrk-seconds", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="wrk runs against each app, in turns")
    ap.add_argument("--saturation-only", action="store_true", help="only wrk against both apps")
    args = ap.parse_args()
    home = args.home.resolve()
    cfg_args = ["--config", str(args.config)] if args.config else []
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    key = cli(home, cfg_args, env, "keys", "create", "--name", "benchmark").strip().splitlines()[-1]
    from core.config import load_config
    from system_db.store import SystemStore

    store = SystemStore(load_config(args.config, home=home).system_db_url)  # the system store the service uses
    engine = store.engine
    seg = store.read_segments()
    seg = seg[seg["is_candidate"].astype(bool)]
    table = f"{store.schema}.decisions" if store.schema else "decisions"  # the decision log
    players = seg["player_id"].sample(frac=1, random_state=0).astype(int).tolist()
    print(f"{len(players):,} candidates in {home}", flush=True)
    # the frequency cap would answer most repeat calls with "no offer" before scoring: off for the benchmark
    cli(home, cfg_args, env, "overrides", "set", "frequency_cap_days", "0", "--who", "benchmark")
    logs = Path(tempfile.mkdtemp(prefix="serving-load-"))
    results: dict[str, object] = {}
    if not args.saturation_only:
        cold_configs = config_copy(args.config, logs / "cold-configs", prefetch=False)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cold = start(
            [REKINDLE, "--home", str(home), "--config", str(cold_configs), "serve", "--port", str(port)],
            env,
            url + "/ready",
            logs / "cold.log",
        )
        try:
            results["one client, cold"] = one_client(url, key, players[: args.one_client])
            print(
                "one client, no prefetch (features read from the online store):",
                results["one client, cold"],
                flush=True,
            )
        finally:
            stop(cold)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bento = start(
        [REKINDLE, "--home", str(home), *cfg_args, "serve", "--port", str(port)],
        env,
        url + "/ready",
        logs / "bento.log",
    )
    bare = None
    try:
        waited = wait_prefetched(url, len(players))
        print(f"prefetch of {len(players):,} candidates done in both workers after {waited:.0f} s", flush=True)
        if not args.saturation_only:
            results["one client, prefetched"] = one_client(url, key, players[: args.one_client])
            print("one client, prefetched:", results["one client, prefetched"], flush=True)
            open_loop_phase(url, key, players, args, engine, results, table)
        bare_port = free_port()
        bare_url = f"http://127.0.0.1:{bare_port}"
        bare_env = {**env, "REKINDLE_HOME": str(home), "OMP_NUM_THREADS": "1",  # as `rekindle serve` sets it
                    **({"REKINDLE_CONFIG": str(args.config)} if args.config else {})}  # fmt: skip
        bare = start([UVICORN, "benchmarks.bare_app:app", "--workers", "2", "--host", "127.0.0.1", "--port",
                      str(bare_port), "--no-access-log"], bare_env, bare_url + "/ready", logs / "bare.log")  # fmt: skip
        wait_prefetched(bare_url, len(players))  # the state the BentoML service is in
        # both up, loaded in turns: a drift of the machine's speed (or of the log's size) falls on both alike
        runs: dict[str, list[dict[str, float | str]]] = {"bentoml": [], "bare starlette": []}
        for r in range(args.rounds):
            for name, target in (("bentoml", url), ("bare starlette", bare_url)):
                got = wrk(target, key, players, args.connections, args.wrk_seconds)
                runs[name].append(got)
                print(f"round {r + 1}, wrk {name}:", got, flush=True)
        for name, each_run in runs.items():
            results[f"wrk {name}"] = {
                key_: float(np.mean([float(g[key_]) for g in each_run])) for key_ in ("rps", "p50_ms", "p99_ms")
            } | {"non_2xx": sum(int(g["non_2xx"]) for g in each_run)}
            print(f"wrk {name}, {args.rounds} rounds:", results[f"wrk {name}"], flush=True)
        each = [b["rps"] / s["rps"] for b, s in zip(runs["bentoml"], runs["bare starlette"], strict=True)]  # type: ignore[operator]
    finally:
        stop(bento)
        if bare is not None:
            stop(bare)
    ratio = results["wrk bentoml"]["rps"] / results["wrk bare starlette"]["rps"]  # type: ignore[index]
    print(f"saturation: BentoML / bare Starlette = {ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in each)})",
          flush=True)  # fmt: skip
    cli(home, cfg_args, env, "overrides", "set", "frequency_cap_days", "null", "--who", "benchmark")
    print("\nwhere the time goes (the engine in this process, 300 calls, features read from the online store):")
    print(profile(home, players[-400:]))


if __name__ == "__main__":
    main()
