"""The dashboard's pages against issue 15's target: each renders in under 300 ms at p95 on the
100,000-player world.

    .venv/bin/python -m benchmarks.dashboard --home /work/dev/bench100k
    .venv/bin/python -m benchmarks.dashboard --home W --requests 100 --path "/planner?budget=5000000" --profile

HOME is a built world (`rekindle --home HOME run --players 100000 --weeks 2`: segments, a registered model,
batches in the decision log, an experiment, monitoring runs). The script adds a throw-away admin
(``bench-admin``) to the home's system store when it has none, starts `rekindle --home HOME dashboard` on a
free port of 127.0.0.1, signs in as a browser does (the sign-in form's CSRF token, then the session cookie)
and, one page at a time, times a first load, then ``--requests`` sequential GETs: the round trip seen by a
client on the same machine (routing, session, the page's queries, the template, the network stack).
Printed per page: status, first load, p50, p95 and max (ms), and whether p95 is under the target. A page
answering 404 is not built yet: reported as missing, not a failure. The exit code is 1 when a page that
exists misses the target or answers with another status than 200.

``--profile`` then profiles each page that missed the target in this process (the dashboard's app through
Starlette's TestClient, ``--profile-requests`` GETs after a warm-up) and prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa

from benchmarks.serving_load import free_port, start, stop

ROOT = Path(__file__).resolve().parent.parent
REKINDLE = str(ROOT / ".venv" / "bin" / "rekindle")
PAGES = ["/", "/preferences", "/planner", "/recommendations", "/experiments", "/health", "/adjustments",
         "/admin/users", "/admin/keys"]  # fmt: skip
TARGET_MS = 300.0
USER, PASSWORD = "bench-admin", "bench-admin-password"


@dataclass
class Timing:
    path: str
    status: int
    first_ms: float
    times_ms: list[float]

    @property
    def missing(self) -> bool:
        return self.status == 404

    def pct(self, q: float) -> float:
        return float(np.percentile(self.times_ms, q)) if self.times_ms else float("nan")

    @property
    def ok(self) -> bool:
        return self.missing or (self.status == 200 and self.pct(95) < TARGET_MS)


def ensure_admin(system_db_url: str) -> str:
    """Create the benchmark's admin unless the store has it; what was done."""
    from system_db.store import SystemStore
    from system_db.users import Users

    users = Users(SystemStore(system_db_url))
    if users.get(USER) is not None:
        return f"user {USER} exists"
    if any(u["name"] == USER for u in users.list()):
        sys.exit(f"user {USER} is disabled in this home's system store; use another home or re-enable it")
    users.create(USER, "admin", PASSWORD)
    return f"created user {USER} (admin)"


def world_size(db_url: str, system_db_url: str) -> tuple[int, int | None]:
    """Players in the latest segmentation (the system store) and in the platform DB (None if unreadable)."""
    from platform_db.db import connect
    from system_db.store import SystemStore

    store = SystemStore(system_db_url)
    t = store.segments
    latest = sa.select(sa.func.max(t.c.as_of)).scalar_subquery()
    with store.engine.connect() as conn:
        segmented = int(conn.execute(sa.select(sa.func.count()).where(t.c.as_of == latest)).scalar() or 0)
    try:
        with connect(db_url).connect() as conn:
            platform: int | None = int(conn.execute(sa.text("SELECT count(*) FROM players")).scalar() or 0)
    except Exception:  # the count is informative only: a world without its platform DB is still measured
        platform = None
    return segmented, platform


def sign_in_form(page: httpx.Response) -> dict[str, str]:
    """The sign-in form's fields for the benchmark's user, with the page's hidden CSRF token."""
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    if page.status_code != 200 or found is None:
        sys.exit(f"no sign-in form at {page.url} (status {page.status_code})")
    return {"name": USER, "password": PASSWORD, "csrf": found.group(1)}


def sign_in(client: httpx.Client, prefix: str) -> None:
    """Sign in as a browser does: the form's CSRF token, then the session cookie the POST sets."""
    done = client.post(f"{prefix}/signin", data=sign_in_form(client.get(f"{prefix}/signin")))
    if done.status_code != 303:
        sys.exit(f"sign-in as {USER} failed (status {done.status_code}): wrong password for an existing user?")


def time_page(client: httpx.Client, path: str, requests: int) -> Timing:
    t0 = time.perf_counter()
    first = client.get(path)
    first_ms = (time.perf_counter() - t0) * 1000
    if first.status_code == 404:
        return Timing(path, 404, first_ms, [])
    times, status = [], first.status_code
    for _ in range(requests):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        status = r.status_code if r.status_code != 200 else status
    return Timing(path, status, first_ms, times)


def table(timings: list[Timing]) -> str:
    lines = [f"{'page':<34}{'status':>8}{'first ms':>10}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}  p95 < 300 ms"]
    for t in timings:
        if t.missing:
            lines.append(f"{t.path:<34}{'missing':>8}{'':>10}{'':>9}{'':>9}{'':>9}  -")
            continue
        verdict = "yes" if t.ok else ("NO" if t.status == 200 else f"NO (status {t.status})")
        lines.append(f"{t.path:<34}{t.status:>8}{t.first_ms:>10,.0f}{t.pct(50):>9,.0f}{t.pct(95):>9,.0f}"
                     f"{max(t.times_ms):>9,.0f}  {verdict}")  # fmt: skip
    return "\n".join(lines)


def profile(home: Path, config: Path | None, path: str, requests: int) -> str:
    """Where the time of ``requests`` GETs of ``path`` goes: the dashboard's app called in this process's own
    event loop (httpx's ASGI transport: no server, no thread, so cProfile sees the page's work)."""
    import asyncio

    from core.config import load_config
    from serving.dashboard.app import build

    app = build(lambda: load_config(config, home=home))
    pr = cProfile.Profile()

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            await client.post("/signin", data=sign_in_form(await client.get("/signin")))
            await client.get(path)  # the first load: the stores opened, the registry's client made
            pr.enable()
            for _ in range(requests):
                await client.get(path)
            pr.disable()

    asyncio.run(run())
    buf = io.StringIO()
    stats = pstats.Stats(pr, stream=buf)
    buf.write(f"--- {path}: {requests} requests in this process, by cumulative time\n")
    ours = r"serving/|system_db/|training/|monitoring/|mlflow|sqlalchemy/engine|jinja2|plotly"
    stats.sort_stats("cumulative").print_stats(ours, 30)
    buf.write(f"--- {path}: by own time\n")
    stats.sort_stats("tottime").print_stats(15)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_home = os.environ.get("REKINDLE_HOME")
    ap.add_argument("--home", type=Path, default=Path(default_home) if default_home else None,
                    required=default_home is None, help="the world's home (default $REKINDLE_HOME)")  # fmt: skip
    ap.add_argument("--config", type=Path, default=None, help="configuration directory (default the repo's)")
    ap.add_argument("--requests", type=int, default=50, help="timed GETs per page after the first load")
    ap.add_argument("--path", action="append", default=[], help="another page to time, e.g. /planner?budget=5000000")
    ap.add_argument("--profile", action="store_true", help="profile each page that misses the target")
    ap.add_argument("--profile-requests", type=int, default=10)
    args = ap.parse_args()
    home = args.home.resolve()
    if not home.is_dir():
        sys.exit(f"no home at {home}: build one with `rekindle --home {home} run --players 100000`")
    from core.config import load_config

    cfg = load_config(args.config, home=home)
    print(ensure_admin(cfg.system_db_url))
    segmented, platform = world_size(cfg.db_url, cfg.system_db_url)
    shown = "unreadable" if platform is None else f"{platform:,}"
    print(f"world {home}: {segmented:,} players in the latest segmentation, {shown} in the platform DB")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg_args = ["--config", str(args.config)] if args.config else []
    log = home / "dashboard" / "benchmark-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    command = [REKINDLE, "--home", str(home), *cfg_args, "dashboard", "--host", "127.0.0.1", "--port", str(port)]
    server = start(command, dict(os.environ), url + "/dashboard/signin", log)
    print(f"dashboard up on {url} in {time.perf_counter() - t0:.1f} s (pid {server.pid}, log {log})")
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            sign_in(client, "/dashboard")
            timings = []
            for path in [*PAGES, *args.path]:
                timings.append(time_page(client, "/dashboard" + path, args.requests))
                print(f"  {path}: done", flush=True)
    finally:
        stop(server)
    print(f"\n{args.requests} sequential GETs per page after a first load (ms, client round trip on 127.0.0.1)")
    print(table(timings))
    slow = [t for t in timings if not t.ok]
    print(f"\n{len(slow)} of {sum(not t.missing for t in timings)} built pages miss the target" if slow
          else "\nevery built page is under the target")  # fmt: skip
    if args.profile:
        for t in slow:
            print(profile(home, args.config, t.path.removeprefix("/dashboard") or "/", args.profile_requests))
    sys.exit(1 if slow else 0)


if __name__ == "__main__":
    main()
