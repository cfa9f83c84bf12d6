"""The feature store at scale: build, materialise, online read and training set, with wall time and peak memory.

Each stage runs as its own `rekindle` command under /usr/bin/time, so every figure is what a user gets
(imports and all) and every peak RSS is that stage's own.

    .venv/bin/python benchmarks/feature_store.py --home /tmp/feat100k                       # simulate 100k x 180 first
    .venv/bin/python benchmarks/feature_store.py --home /tmp/feat1m --players 1000000
    .venv/bin/python benchmarks/feature_store.py --home /tmp/feat100k --skip-simulate --production \\
        --pg postgresql+psycopg://postgres@127.0.0.1:5432/feat100k --redis 127.0.0.1:6379,db=5

With --production the platform is simulated into (or read from) the PostgreSQL database given with --pg,
and the feature store is PostgreSQL + Redis. The online-read figure comes from 2,000 single-player reads of
random candidates after a warm-up; the label check compares the training set's random-slice decisions with
the simulator's truth per arm.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
REKINDLE = str(ROOT / ".venv" / "bin" / "rekindle")


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; (seconds, peak RSS GiB, stdout)."""
    cmd = ["/usr/bin/time", "-f", "TIME %e %M", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
    line = next(x for x in proc.stderr.splitlines() if x.startswith("TIME "))
    _, secs, kb = line.split()
    return float(secs), int(kb) / 2**20, proc.stdout


def online_reads(home: Path, config: Path | None, db: str | None, n: int) -> tuple[float, float, float]:
    """p50, p99 and max latency (ms) of single-player online reads of random candidates."""
    from core.config import load_config
    from features.families import ENTITY
    from features.online import OnlineFeatures

    cfg = load_config(config, home=home, db_url=db)
    online = OnlineFeatures(cfg)  # warms up
    seg = pd.read_parquet(cfg.path("truth", "truth.parquet"), columns=[ENTITY])
    ids = np.random.default_rng(0).choice(seg[ENTITY].unique(), n)
    lat = np.empty(n)
    for i, pid in enumerate(ids):
        t = time.perf_counter()
        row = online.player(int(pid))
        lat[i] = time.perf_counter() - t
        if i == 0 and row["days_since_last_session"] is None:
            sys.exit(f"player {pid} is a candidate but has no online features")
    ms = lat * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max())


def label_check(home: Path) -> pd.DataFrame:
    """Per arm on the simulator's random slice: training-set labels vs the truth's expectations."""
    ts = pd.read_parquet(home / "training" / "training_set.parquet")
    truth = pd.read_parquet(home / "truth" / "decisions.parquet")
    truth = truth[truth["group"] == "random"].copy()
    truth["day"] = pd.to_datetime(truth["sent_at"]).dt.floor("D")
    ts["day"] = pd.to_datetime(ts["campaign_at"]).dt.floor("D")
    m = truth.merge(ts, on=["player_id", "day"], how="inner", validate="one_to_one")
    out = []
    for arm, g in m.groupby("arm"):
        se = np.sqrt(max(g["p_reengage"].mean() * (1 - g["p_reengage"].mean()), 1e-9) / len(g))
        dep_se = g["deposits"].std(ddof=1) / np.sqrt(len(g))
        out.append(
            {
                "arm": arm,
                "rows": len(g),
                "reengaged": g["reengaged"].mean(),
                "truth p": g["p_reengage"].mean(),
                "z": (g["reengaged"].mean() - g["p_reengage"].mean()) / se,
                "deposits": g["deposits"].mean(),
                "truth deposits": g["expected_deposits"].mean(),
                "z dep": (g["deposits"].mean() - g["expected_deposits"].mean()) / dep_se,
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--players", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--skip-simulate", action="store_true", help="reuse the world already under --home")
    ap.add_argument("--production", action="store_true", help="PostgreSQL platform and store + Redis online")
    ap.add_argument("--pg", help="PostgreSQL URL (with --production)")
    ap.add_argument("--redis", default="127.0.0.1:6379,db=5")
    ap.add_argument("--reads", type=int, default=2_000)
    ap.add_argument("--no-training-set", action="store_true")
    ap.add_argument("--skip-build", action="store_true", help="reuse the build and the online store under --home")
    args = ap.parse_args()
    home: Path = args.home.resolve()
    env = dict(os.environ, REKINDLE_HOME=str(home))
    config: Path | None = None
    if args.production:
        if not args.pg:
            sys.exit("--production needs --pg URL")
        env["REKINDLE_DB_URL"] = args.pg
        config = home / "configs"
        if config.exists():
            import shutil

            shutil.rmtree(config)
        import shutil

        shutil.copytree(ROOT / "configs", config)
        text = (config / "rekindle.yaml").read_text()
        text = text.replace("    mode: embedded", "    mode: production")
        text = text.replace('redis: "127.0.0.1:6379,db=0"', f'redis: "{args.redis}"')
        (config / "rekindle.yaml").write_text(text)
        env["REKINDLE_CONFIG"] = str(config)
    figures: list[tuple[str, str]] = []
    if not args.skip_simulate:
        sim = [REKINDLE, "simulate", "--players", str(args.players), "--days", str(args.days), "--seed", "1"]
        secs, peak, _ = timed([*sim, "--overwrite"], env)
        figures.append(("simulate", f"{secs:.0f} s, peak {peak:.2f} GiB"))
    if not args.skip_build:
        secs, peak, out = timed([REKINDLE, "features", "build"], env)
        figures.append(("features build", f"{secs:.0f} s, peak {peak:.2f} GiB"))
        print(out)
        secs, peak, out = timed([REKINDLE, "features", "materialize"], env)
        figures.append(("features materialize", f"{secs:.0f} s, peak {peak:.2f} GiB"))
        print(out)
    p50, p99, worst = online_reads(home, config, env.get("REKINDLE_DB_URL"), args.reads)
    figures.append(
        (f"online read, 1 player ({args.reads:,} reads)", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.1f} ms")
    )
    if not args.no_training_set:
        secs, peak, out = timed([REKINDLE, "features", "training-set"], env)
        figures.append(("features training-set", f"{secs:.0f} s, peak {peak:.2f} GiB"))
        print(out)
        check = label_check(home)
        print("random slice, training-set labels vs simulator truth per arm:")
        print(check.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
        figures.append(
            ("max |z| re-engaged / deposits", f"{check['z'].abs().max():.2f} / {check['z dep'].abs().max():.2f}")
        )
    print("\n".join(f"{k:<45} {v}" for k, v in figures))


if __name__ == "__main__":
    main()
