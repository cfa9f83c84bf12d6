"""Console summaries (rich tables) of what the commands did."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_simulation(console: Console, summary: Any, db: str) -> None:
    cal = summary.calibration
    rows = Table(title="platform database", show_header=True)
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, n in summary.rows.items():
        rows.add_row(name, f"{n:,}")
    console.print(rows)
    t = Table(title="calibration (from the ground truth at the as-of time)", show_header=True)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target")
    t.add_row("dormant share of players", f"{cal['dormant_share']:.1%}", "most players are dormant (> 50%)")
    t.add_row("dormant candidates (truth rows / arms)", f"{cal['candidates']:,} x {cal['arms'] + 1}", "")
    t.add_row(
        "arms losing money on most candidates",
        f"{cal['share_of_arms_losing_money_on_most_players']:.0%}",
        "most offers lose money on most players",
    )
    t.add_row("best single arm", f"{cal['best_single_arm']}", "")
    t.add_row(
        "  its incremental net value / candidate",
        f"{cal['best_single_arm_incremental_net_per_candidate']:,.0f} KRW",
        "> 0",
    )
    t.add_row("oracle incremental net value / candidate", f"{cal['oracle_incremental_net_per_candidate']:,.0f} KRW", "")
    t.add_row("oracle / best single arm", f"{cal['oracle_over_best_single']:.2f}x", "1.3x - 3x")
    t.add_row("oracle sends nothing to", f"{cal['oracle_share_no_offer']:.0%}", "")
    if "sd_7day_deposits_random_slice" in cal:
        t.add_row(
            "sd of a player's 7-day deposits",
            f"{cal['sd_7day_deposits_random_slice']:,.0f} KRW",
            "far above any arm's mean effect",
        )
        t.add_row("largest mean deposit effect of an arm", f"{cal['max_mean_deposit_effect_of_an_arm']:,.0f} KRW", "")
        t.add_row("7-day windows with no deposit", f"{cal['share_zero_7day_deposits']:.0%}", "many zeros")
    console.print(t)
    console.print(f"calibration picture: {summary.truth_dir / 'calibration.png'}")
    console.print(
        f"as-of time: [bold]{summary.as_of:%Y-%m-%dT%H:%M:%S}[/] (UTC)   database: {db}   truth: {summary.truth_dir}"
    )


def print_forward(console: Console, summary: Any) -> None:
    out = summary.outcomes
    moved = f"{summary.from_time:%Y-%m-%d %H:%M} -> {summary.as_of:%Y-%m-%d %H:%M}"
    t = Table(title=f"{summary.decisions:,} decisions applied; world moved {moved}")
    for col in ("arm", "decisions", "re-engaged", "deposits (KRW)", "reward cost (KRW)"):
        t.add_column(col, justify="right" if col != "arm" else "left")
    if len(out):
        g = out.groupby(["event_type", "reward"]).agg(
            n=("decision_id", "size"),
            r=("realised_reengaged", "mean"),
            d=("realised_deposits", "sum"),
            c=("realised_cost", "sum"),
        )
        for (event, reward), row in g.iterrows():
            t.add_row(f"{event}@{reward}", f"{row.n:,}", f"{row.r:.1%}", f"{row.d:,.0f}", f"{row.c:,.0f}")
    console.print(t)
    console.print("appended rows: " + ", ".join(f"{k} {v:,}" for k, v in summary.rows.items()))
    console.print(f"outcomes with their truth: {summary.outcomes_path}")


def print_segments(console: Console, result: Any) -> None:
    t = Table(title=f"segments at {result.as_of:%Y-%m-%dT%H:%M:%S}")
    t.add_column("segment")
    t.add_column("players", justify="right")
    t.add_column("candidates", justify="right")
    for _, row in result.summary.iterrows():
        t.add_row(str(row["segment"]), f"{int(row['players']):,}", f"{int(row['candidates']):,}")
    console.print(t)
    for line in result.notes:
        console.print(line)


def print_feature_build(console: Console, summary: Any) -> None:
    for note in summary.notes:
        console.print(note)
    t = Table(title=f"feature snapshots as of {summary.as_of:%Y-%m-%dT%H:%M} (UTC)", show_header=True)
    t.add_column("view")
    t.add_column("rows", justify="right")
    for view, n in summary.rows.items():
        t.add_row(view, f"{n:,}")
    console.print(t)
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    console.print(
        f"{summary.players:,} players x {summary.snapshots} daily snapshots "
        f"from {summary.first_snapshot:%Y-%m-%dT%H:%M}"
        f"\nthe platform's games: {', '.join(summary.games) or 'none named'}; "
        f"event types offered: {', '.join(summary.event_types) or 'none'}"
        f"\ntime: {secs}\nstore: {summary.store}"
    )


def print_training_set(console: Console, ts: Any) -> None:
    rates = ts.label_rates()
    t = Table(title=f"training set as of {ts.as_of:%Y-%m-%dT%H:%M}: {len(ts.frame):,} decision rows", show_header=True)
    for col in ("arm", "rows", "re-engaged", "converted", "deposits KRW", "reward cost KRW", "net value KRW"):
        t.add_column(col, justify="left" if col == "arm" else "right")
    for r in rates.itertuples():
        t.add_row(
            str(r.arm),
            f"{r.rows:,}",
            f"{r.reengaged:.1%}",
            f"{r.converted:.1%}",
            f"{r.deposits:,.0f}",
            f"{r.reward_cost:,.0f}",
            f"{r.net_value:,.0f}",
        )
    console.print(t)
    console.print(
        f"{len(ts.campaigns):,} campaign{'s' if len(ts.campaigns) != 1 else ''}; "
        f"left out {ts.open_windows:,} rows whose attribution window is still open"
    )
    if ts.path is not None:
        console.print(f"wrote {ts.path}")


def print_judged(console: Console, j: Any) -> None:
    from rich.table import Table

    from training import evaluation as ev

    e = j.evaluation
    values = e.values
    has_truth = (values["estimator"] == "truth").any()
    table = Table(title="policy values per candidate on the held-out campaigns (incremental against no offer)")
    for col in ("policy", "re-engagements", "net value KRW", "reward cost KRW", "ROI", "estimator"):
        table.add_column(col, justify="left" if col in ("policy", "estimator") else "right")

    def fmt(policy: str, q: str, est: str) -> str:
        hit = values[(values["policy"] == policy) & (values["quantity"] == q) & (values["estimator"] == est)]
        if hit.empty:
            return "-"
        v, lo, hi = hit.iloc[0][["estimate", "low", "high"]]
        if q == "reengaged":
            return f"{v:+.4f} [{lo:+.4f}, {hi:+.4f}]" if lo == lo else f"{v:+.4f}"
        if q == "roi":  # undefined where nothing is spent (no offer, a message without reward)
            return f"{v:.2f}" if v == v else "undefined"
        return f"{v:,.0f} [{lo:,.0f}, {hi:,.0f}]" if lo == lo else f"{v:,.0f}"

    policies = [ev.LEARNED, ev.BEST_SINGLE, ev.PER_SEGMENT, ev.RANDOM, ev.HISTORICAL, ev.NO_OFFER]
    if has_truth:
        policies.append(ev.ORACLE)
    for p in policies:
        for est in ("truth", "dr-sized", "dr-hurdle", "dr", "snips", "ips", "on-policy"):
            if ((values["policy"] == p) & (values["estimator"] == est)).any():
                table.add_row(p, *(fmt(p, q, est) for q in ("reengaged", "net_value", "reward_cost", "roi")), est)
    console.print(table)
    console.print(f"best single arm: {e.arms_of_baselines.get(ev.BEST_SINGLE)}")
    console.print(
        f"ROI accuracy ({e.roi_accuracy_source}): {e.roi_accuracy:.3f} over {len(e.roi_cells)} (segment, arm) cells"
    )
    if has_truth:
        learned = e.value(ev.LEARNED, "net_value", "truth")
        best = e.value(ev.BEST_SINGLE, "net_value", "truth")
        oracle = e.value(ev.ORACLE, "net_value", "truth")
        dr = e.value(ev.LEARNED, "net_value", "dr")
        sized = e.value(ev.LEARNED, "net_value", "dr-sized")

        def ratio(a: float, b: float) -> float:
            return a / b if b else float("nan")

        console.print(
            f"true value: learned {learned:,.0f} vs best single arm {best:,.0f} ({ratio(learned, best):.2f}x), "
            f"best arm per segment {e.value(ev.PER_SEGMENT, 'net_value', 'truth'):,.0f}, oracle {oracle:,.0f}; "
            f"headroom captured {ratio(learned - best, oracle - best):.3f}; DR-sized estimate {sized:,.0f} "
            f"({ratio(sized - learned, abs(learned)):+.1%} from the truth), DR {dr:,.0f} "
            f"({ratio(dr - learned, abs(learned)):+.1%})"
        )
    if j.budget is not None:
        for _, b in j.budget.iterrows():
            console.print(
                f"re-engagement objective within the cost of {b['reference']} {b['arm']}: "
                f"{b['policy_incremental_reengage']:.4f} vs {b['arm_incremental_reengage']:.4f} "
                f"incremental re-engagements per candidate ({b['ratio']:.2f}x) at a true cost of "
                f"{b['policy_cost']:,.0f} vs {b['arm_cost']:,.0f} KRW"
            )
    ece = e.extra.get("expected_calibration_error_reengage")
    if ece is not None:
        console.print(f"calibration: expected calibration error of the re-engagement probability {ece:.4f}")
    rel = e.reliability[e.reliability["n"] > 0]
    console.print(
        "reliability (confidence bin: share right): "
        + ", ".join(f"{r.bin_low:.2f}-{r.bin_high:.2f}: {r.share_right:.2f} (n={r.n:,})" for r in rel.itertuples())
    )
