"""Pure pieces of training/: arms, policy, off-policy estimators, design, response model, evaluation tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import as_built_config
from sklearn.base import clone

from core.config import Catalog, load_config
from training.arms import ArmError, discover_arms, greedy_mask
from training.baselines import one_hot, uniform_offer
from training.data import TrainingDataError, split_rows, time_split
from training.diagnostics import qini_areas, reliability, roi_cells, uplift_curves
from training.ensemble import confidence
from training.ope import LoggedData, bootstrap_weights, row_terms
from training.policy import choose

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory):
    return as_built_config(tmp_path_factory.mktemp("units"))


def offers(pairs: dict[tuple[str, int], int], claimed: float = 0.5, paid: float = 0.8) -> pd.DataFrame:
    rows = []
    for (event, reward), n in pairs.items():
        k = int(n * claimed)
        rows.append(
            pd.DataFrame({"event_type": event, "reward": reward, "reward_cost": [reward * paid] * k + [0] * (n - k)})
        )
    rows.append(pd.DataFrame({"event_type": ["none"] * 10, "reward": 0, "reward_cost": 0}))
    return pd.concat(rows, ignore_index=True)


# ------------------------------------------------------------------------ arms --
def catalog(*types: dict) -> Catalog:
    return Catalog.model_validate({"event_types": list(types)})


def test_arms_are_the_platforms_own_by_default() -> None:
    """With no catalog, every (event type, reward) pair the history holds with support, a 0-KRW message
    included, priced by what the history paid per claim."""
    hist = offers({("welcome_back", 2000): 300, ("welcome_back", 9000): 120, ("spin_wheel", 500): 40, ("sms", 0): 200})
    found = discover_arms(hist, None, min_support=100)
    arms = found.table
    assert arms["arm"].tolist() == ["none", "sms@0", "welcome_back@2000", "welcome_back@9000"]  # spin_wheel: no support
    assert arms.set_index("arm").loc["welcome_back@2000", "payout"] == pytest.approx(1600)
    assert arms.set_index("arm").loc["sms@0", "payout"] == 0
    assert (arms["source"].iloc[1:] == "history").all() and arms["supported"].all() and not found.notes


def test_a_users_catalog_restricts_prices_adds_inside_the_range_and_new_types() -> None:
    hist = offers({("cashback", 10000): 500, ("cashback", 30000): 400, ("mystery", 700): 500})
    cat = catalog(
        {"name": "cashback", "rewards": [10000, 20000, 50000], "payout_ratio": 0.6},
        {"name": "box", "rewards": [5000], "new": True},
        {"name": "ghost", "rewards": [1000]},
    )
    found = discover_arms(hist, cat, min_support=100)
    arms = found.table.set_index("arm")
    # restricted: mystery is not listed, cashback@30000 not among its rewards; 20000 added inside the range
    assert list(arms.index) == ["none", "box@5000", "cashback@10000", "cashback@20000"]
    assert arms.loc["cashback@10000", "payout"] == pytest.approx(6000)  # the catalog's price
    assert arms.loc["cashback@20000", "source"] == "catalog" and not arms.loc["cashback@20000", "supported"]
    assert arms.loc["box@5000", "source"] == "new" and not arms.loc["box@5000", "supported"]
    assert arms.loc["cashback@10000", "supported"] and arms.loc["none", "supported"]
    assert any("50000" in n and "outside" in n for n in found.notes)  # no extrapolation
    assert any("'ghost' was never offered" in n for n in found.notes)
    assert greedy_mask(found.table).tolist() == [True, False, True, False]


def test_arms_refuse_what_cannot_be_an_arm() -> None:
    hist = offers({("cashback", 10000): 500})
    with pytest.raises(ArmError, match="no arm has 1000"):
        discover_arms(hist, None, min_support=1000)
    bad = pd.DataFrame({"event_type": ["cashback"], "reward": [-5], "reward_cost": [0]})
    with pytest.raises(ArmError, match="negative or missing rewards \\[-5\\]"):
        discover_arms(bad, None, min_support=1)


def test_the_greedy_policy_never_picks_an_arm_without_support(cfg) -> None:
    """An unsupported arm is scored but only exploration sends it: with it the best by far, the policy's
    choice, the best offer its confidence is about, and every baseline go elsewhere."""
    gain = np.array([[0.0, 5.0, 900.0], [0.0, -1.0, 800.0]])
    cost = np.zeros_like(gain)
    allowed = np.array([True, True, False])
    assert choose(gain, cost, allowed=allowed).arm.tolist() == [1, 0]


# ---------------------------------------------------------------------- policy --
def test_policy_takes_the_best_arm_or_nothing() -> None:
    gain = np.array([[0.0, 5.0, 7.0], [0.0, -1.0, -2.0], [0.0, 3.0, 1.0]])
    cost = np.array([[0.0, 1.0, 4.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    c = choose(gain, cost)
    assert c.arm.tolist() == [2, 0, 1] and c.lam == 0
    allowed = np.array([[True, True, False]] * 3)
    assert choose(gain, cost, allowed=allowed).arm.tolist() == [1, 0, 1]


def test_budget_is_respected_and_spent_where_it_gains_most() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    cost = np.column_stack([np.zeros(n), np.full(n, 10.0), np.full(n, 30.0)])
    gain = np.column_stack([np.zeros(n), rng.gamma(2, 5, n), rng.gamma(2, 9, n)])
    free = choose(gain, cost)
    budget = 0.4 * free.cost.sum()
    c = choose(gain, cost, budget=budget)
    assert c.cost.sum() <= budget + 1e-6 and c.cost.sum() >= 0.97 * budget
    assert c.lam > 0
    # a larger budget never gains less
    assert c.gain.sum() >= choose(gain, cost, budget=budget * 0.9).gain.sum()
    with pytest.raises(ValueError, match="budget must be >= 0"):
        choose(gain, cost, budget=-1)


# ------------------------------------------------------------------------- OPE --
def synthetic_logs(n: int, seed: int, noise: float = 2.0):
    """A logging policy that depends on x, outcomes with known arm means."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    k = 3
    logits = np.column_stack([np.zeros(n), 2 * x, -2 * x])
    e = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    a = (rng.uniform(size=n)[:, None] > np.cumsum(e, axis=1)).sum(axis=1)
    mean = np.column_stack([np.zeros(n), 1 + 2 * x, 3 - 4 * x])
    y = mean[np.arange(n), a] + rng.normal(0, noise, n)
    return LoggedData(a, e[np.arange(n), a], np.arange(n)), y, mean, k


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_off_policy_estimators_recover_the_true_value(estimator: str) -> None:
    data, y, mean, k = synthetic_logs(20_000, seed=3)
    target = one_hot((mean.argmax(axis=1)), k)  # the oracle policy, far from the logging one
    truth = (target * mean).sum(axis=1).mean()
    noisy_mu = mean + 0.5  # a biased outcome model: DR must still be right
    num, den = row_terms(data, y, noisy_mu, target)[estimator]
    w = bootstrap_weights(data.cluster, 200, seed=1)
    draws = (w @ num) / (w @ den)
    low, high = np.quantile(draws[1:], [0.005, 0.995])
    assert low <= truth <= high
    direct = row_terms(data, y, noisy_mu, target)["dm"][0].mean()
    assert abs(direct - truth) > 0.4  # the direct method alone inherits the model's bias


def test_doubly_robust_is_tighter_than_ips_with_a_good_model() -> None:
    data, y, mean, k = synthetic_logs(20_000, seed=4, noise=0.5)
    target = uniform_offer(len(y), k)
    w = bootstrap_weights(data.cluster, 200, seed=2)
    spread = {}
    for est in ("ips", "dr"):
        num, den = row_terms(data, y, mean, target)[est]
        spread[est] = ((w @ num) / (w @ den))[1:].std()
    assert spread["dr"] < 0.7 * spread["ips"]


def test_switch_dr_is_dr_below_the_cap_and_the_model_above_it() -> None:
    data, y, mean, k = synthetic_logs(5_000, seed=6)
    target = one_hot(mean.argmax(axis=1), k)
    mu = mean + 0.3
    terms = row_terms(data, y, mu, target)
    np.testing.assert_allclose(terms["dr-switch"][0], terms["dr"][0])  # no cap: plain DR
    capped = row_terms(data, y, mu, target, max_weight=3.0)
    heavy = 1.0 / data.propensity > 3.0
    assert heavy.any() and (~heavy).any()
    np.testing.assert_allclose(capped["dr-switch"][0][heavy], terms["dm"][0][heavy])
    np.testing.assert_allclose(capped["dr-switch"][0][~heavy], terms["dr"][0][~heavy])


def test_bootstrap_resamples_whole_players() -> None:
    w = bootstrap_weights(np.array([7, 7, 7, 9, 9, 11]), 50, seed=0)
    assert (w[0] == 1).all()
    assert (w[1:, 0] == w[1:, 1]).all() and (w[1:, 1] == w[1:, 2]).all() and (w[1:, 3] == w[1:, 4]).all()


# ------------------------------------------------------------------ confidence --
def test_confidence_grows_with_the_margin_over_the_spread() -> None:
    gain = np.array([100.0, 100.0, -50.0, 30.0])  # the recommended arm's gain; for no offer, the declined best offer's
    sd = np.array([10.0, 400.0, 10.0, 10.0])
    conf = confidence(gain, sd, np.array([True, True, False, False]))
    assert conf[0] > 0.99 and 0.5 < conf[1] < 0.7  # same gain, wider spread: less sure
    assert conf[2] > 0.99  # declining an offer that surely loses money
    assert conf[3] < 0.01  # declining an offer that surely pays is surely wrong (a budget's choice)
    assert ((conf >= 0) & (conf <= 1)).all()


# ------------------------------------------------------------ evaluation tables --
def test_roi_accuracy_is_one_minus_weighted_absolute_percentage_error() -> None:
    arms = pd.DataFrame({"arm": ["none", "a", "b"]})
    seg = np.array(["x"] * 400 + ["y"] * 400 + ["z"] * 10)
    actual = np.column_stack([np.zeros(810), np.where(seg == "x", 100.0, 50.0), np.full(810, -20.0)])
    pred = actual * 1.1
    cells, acc = roi_cells(pred, actual, seg, arms, min_cell=300)
    assert set(cells["segment"]) == {"x", "y"}  # z has too few rows
    assert acc == pytest.approx(0.9)


def test_reliability_bins_and_uplift_curves() -> None:
    conf = np.array([0.55, 0.58, 0.75, 0.92, 0.97, 0.99])
    right = np.array([0, 1, 1, 1, 1, 1], float)
    rel = reliability(conf, right)
    assert rel["n"].sum() == 6
    assert rel.loc[rel["bin_low"] == 0.5, "share_right"].item() == 0.5
    arms = pd.DataFrame({"arm": ["none", "a"]})
    actual = np.column_stack([np.zeros(100), np.linspace(10, -10, 100)])
    good = uplift_curves(actual, {"truth": actual}, arms)
    bad = uplift_curves(-actual, {"truth": actual}, arms)
    assert qini_areas(good)["qini_area"].item() > 0 > qini_areas(bad)["qini_area"].item()


# ------------------------------------------------------------------------ split --
def test_time_split_keeps_windows_inside_their_slice() -> None:
    at = pd.date_range("2026-01-01", periods=10, freq="7D")
    frame = pd.DataFrame({"campaign_at": np.repeat(at, 3), "player_id": np.arange(30)})
    frame["window_end"] = frame["campaign_at"] + pd.Timedelta(days=7)
    split = time_split(frame, validation_campaigns=2, test_campaigns=3)
    assert len(split.test) == 9 and len(split.validation) == 6 and len(split.train) == 15
    assert split.train["window_end"].max() <= split.validation_start
    assert split.validation["window_end"].max() <= split.test_start
    with pytest.raises(TrainingDataError, match="holds 10 campaigns; the time split needs at least 12"):
        time_split(frame, validation_campaigns=4, test_campaigns=6)


def test_too_few_campaigns_split_by_player_and_say_so() -> None:
    """One large randomised campaign (the common case of a platform that ran one offer test): every player's
    rows in one part, the shares as asked, and the split names itself."""
    from core.config import SplitConfig

    rng = np.random.default_rng(4)
    players = np.arange(20_000)
    frame = pd.DataFrame(
        {"campaign_at": pd.Timestamp("2026-03-01"), "player_id": np.concatenate([players, players[:5_000]])}
    )
    frame["window_end"] = frame["campaign_at"] + pd.Timedelta(days=7)
    split = split_rows(frame, SplitConfig(), seed=1)
    assert split.kind == "player" and "1 campaign: fewer than the 10 a time split needs" in split.note
    parts = [set(p["player_id"]) for p in (split.train, split.validation, split.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(split.train) + len(split.validation) + len(split.test) == len(frame)
    assert len(parts[2]) / len(players) == pytest.approx(0.25, abs=0.02)
    assert len(parts[1]) / len(players) == pytest.approx(0.2, abs=0.02)
    assert split.describe()["split"].startswith("player (1 campaign")
    many = pd.DataFrame({"campaign_at": np.repeat(pd.date_range("2026-01-01", periods=12, freq="7D"), 5)})
    many = many.assign(player_id=rng.integers(0, 50, len(many)), window_end=many["campaign_at"] + pd.Timedelta(days=7))
    assert split_rows(many, SplitConfig(), seed=1).kind == "time"  # the default wherever the history allows


# ---------------------------------------------------------------- response model --
def synthetic_decisions(cfg, n: int, seed: int, uplift=None):
    """Decision rows with the player features, "none" or login_reward at three sizes; re-engagement's
    log-odds rise with the reward by ``uplift(frame)`` per 1,000 KRW (default: the same for everyone)."""
    from features.families import player_families

    rng = np.random.default_rng(seed)
    names = [f.name for fam in player_families(cfg) for f in fam.features]
    frame = pd.DataFrame({c: rng.normal(size=n).astype(np.float32) for c in names})
    for c, levels in (("channel", ["ads", "organic"]), ("dormancy_stage", ["new"]), ("value_tier", ["low-value"])):
        frame[c] = rng.choice(levels, n)
    for c in ("status", "segment"):
        frame[c] = "x"
    ladder = [1000, 3000, 5000]
    frame["event_type"] = np.where(rng.uniform(size=n) < 0.3, "none", "login_reward")
    frame["reward"] = np.where(frame["event_type"] == "none", 0, rng.choice(ladder, n))
    slope = np.full(n, 0.15) if uplift is None else uplift(frame)
    base = -2.5 + 0.8 * (frame["sessions_30d"] > 0)
    frame["true_logit0"] = base
    frame["true_slope"] = slope
    p = 1 / (1 + np.exp(-(base + slope * frame["reward"] / 1000)))
    frame["reengaged"] = rng.uniform(size=n) < p
    frame["deposits"] = np.where(frame["reengaged"], rng.gamma(1, 20000, n), 0)
    frame["reward_cost"] = np.where(frame["reengaged"] & (frame["event_type"] != "none"), frame["reward"], 0)
    return frame


def test_response_model_is_monotone_in_the_reward_and_clonable(cfg) -> None:
    from training.design import fit_design
    from training.response import ResponseModel

    frame = synthetic_decisions(cfg, 6000, 5)
    arms = discover_arms(frame, None, min_support=10).table
    design = fit_design(cfg, frame, arms)
    model = ResponseModel(design, n_estimators=40, min_child_samples=50).fit(frame, frame)
    pred = model.predict_arms(frame.head(500), arms)
    p_arms = pred.p_reengage[:, 1:]
    assert (np.diff(p_arms, axis=1) >= -1e-9).all()  # within login_reward, more reward never lowers the chance
    assert p_arms[:, -1].mean() > pred.p_reengage[:, 0].mean()
    returners = frame["reengaged"].to_numpy()
    own = model.predict_rows(frame, frame["event_type"].to_numpy(), frame["reward"].to_numpy())
    size = own[1][returners] / own[0][returners]  # E[deposits | re-engaged] of each returner's own arm
    assert size.mean() == pytest.approx(frame.loc[returners, "deposits"].mean(), rel=0.02)  # balanced
    twin = clone(model)
    assert twin.get_params()["n_estimators"] == 40 and not hasattr(twin, "heads_")


@pytest.mark.parametrize("learner", ["s", "t", "offset"])
def test_every_learner_finds_who_responds_to_the_offer(cfg, learner: str) -> None:
    """Half the players (``sessions_7d > 0``) respond to the reward five times as strongly: each
    meta-learner must rank their incremental chance of re-engaging above the others'."""
    from training.design import fit_design
    from training.response import ResponseModel

    def strong_half(f: pd.DataFrame) -> np.ndarray:
        return np.where(f["sessions_7d"] > 0, 0.4, 0.08)

    frame = synthetic_decisions(cfg, 40_000, 11, uplift=strong_half)
    arms = discover_arms(frame, None, min_support=10).table
    design = fit_design(cfg, frame, arms, use_match=False)
    model = ResponseModel(design, learner=learner, n_estimators=80, min_child_samples=400).fit(frame, frame)
    test = synthetic_decisions(cfg, 4000, 12, uplift=strong_half)
    pred = model.predict_arms(test, arms).incremental_reengage()[:, -1]  # login_reward@5000
    logit0, slope = test["true_logit0"].to_numpy(), test["true_slope"].to_numpy()
    true = 1 / (1 + np.exp(-(logit0 + 5 * slope))) - 1 / (1 + np.exp(-logit0))
    assert np.corrcoef(pred, true)[0, 1] > 0.8
    assert abs(pred.mean() - true.mean()) < 0.25 * true.mean()


def test_min_child_samples_scales_with_the_rows_of_each_head(cfg) -> None:
    """The deposits head sees only the returners: its leaves may hold proportionally fewer rows, so a
    minimum set for all rows does not leave it a single leaf."""
    from training.design import fit_design
    from training.response import ResponseModel

    frame = synthetic_decisions(cfg, 6000, 5)
    arms = discover_arms(frame, None, min_support=10).table
    design = fit_design(cfg, frame, arms)
    returners = int(frame["reengaged"].sum())
    model = ResponseModel(design, n_estimators=5, min_child_samples=returners).fit(frame, frame)
    assert model.leaf_rows(returners / len(frame)) == round(returners**2 / len(frame))
    assert model.leaf_rows(1e-6) == 20  # the floor
    tree = model.heads_.boosters["deposits/all"].dump_model()["tree_info"][0]["tree_structure"]
    assert "split_index" in tree  # it split: without scaling, min_child_samples = all its rows forbids any split


def test_promotion_is_refused_when_only_the_models_own_answers_favour_it() -> None:
    """The judged model overrates arm 2 and every row re-engages, so the hurdle outcome is the model's own
    prediction: "dr-hurdle" finds arm 2 for everyone better than the best arm per row; the plain doubly
    robust difference and the size-calibrated one ("dr-sized") find it clearly worse, and so does the verdict."""
    from training.evaluation import EvalData, policy_gaps
    from training.promotion import verdict
    from training.response import ArmPredictions
    from training.scorer import Scores

    data, y, mean, k = synthetic_logs(20_000, seed=7, noise=0.5)
    margin = 1.0
    mu = mean.copy()
    mu[:, 2] += 3.0  # self-serving: the model believes in arm 2
    arms = pd.DataFrame({"arm": ["none", "a", "b"]})
    n = len(y)
    scores = Scores(arms, ArmPredictions(arms, np.ones((n, k)), mu / margin, np.zeros((n, k))), margin)
    ones = np.ones(n)
    eval_data = EvalData(data, {"reengaged": ones, "net_value": y, "reward_cost": 0 * ones}, ones, margin, 5.0)
    w = bootstrap_weights(data.cluster, 200, seed=3)
    best_per_row, arm_two = mean.argmax(axis=1), np.full(n, 2)
    true_gap = mean[np.arange(n), arm_two].mean() - mean[np.arange(n), best_per_row].mean()
    gaps = policy_gaps(scores.point, eval_data, arm_two, best_per_row, w).set_index("estimator")
    assert true_gap < -0.5
    assert gaps.loc["dr-hurdle", "estimate"] > 0  # fooled by the model
    assert gaps.loc["dr", "low"] <= true_gap <= gaps.loc["dr", "high"] < 0  # not fooled
    # the realised deposits of arm 2's returners pull its sizes back down: worse, not better
    assert gaps.loc["dr-sized", "high"] < 0
    assert not verdict(gaps.reset_index())[0]
    assert verdict(policy_gaps(scores.point, eval_data, best_per_row, np.full(n, 1), w))[0] == (
        mean[np.arange(n), best_per_row].mean() > mean[:, 1].mean()
    )


def test_business_overrides_reprice_net_value_and_refuse_other_windows(tmp_path: Path) -> None:
    """--margin reprices the net value of a training set; other windows or dormancy than its labels' are refused."""
    from features.training_set import write_training_set
    from training.data import load_training_set

    cfg = load_config(CONFIG_DIR, home=tmp_path)
    frame = pd.DataFrame(
        {
            "campaign_at": pd.to_datetime(["2026-01-01", "2026-01-01"]),
            "player_id": [1, 2],
            "event_type": ["cashback", "none"],
            "reward": [10_000, 0],
            "eligible": [True, True],
            "reengaged": [True, False],
            "converted": [True, False],
            "deposits": [50_000.0, 0.0],
            "reward_cost": [5_000.0, 0.0],
            "net_value": [cfg.business.margin * 50_000 - 5_000, 0.0],
        }
    )
    path = write_training_set(cfg, frame, tmp_path / "ts.parquet")
    assert load_training_set(cfg, path)["net_value"].tolist() == frame["net_value"].tolist()
    cheap = load_config(CONFIG_DIR, home=tmp_path, overrides={"business": {"margin": 0.5}})
    assert load_training_set(cheap, path)["net_value"].tolist() == [20_000.0, 0.0]
    days = cfg.business.attribution_days + 2
    other = load_config(CONFIG_DIR, home=tmp_path, overrides={"business": {"attribution_days": days}})
    with pytest.raises(TrainingDataError, match=rf"attribution_days {days} but the training set was built with"):
        load_training_set(other, path)


def test_business_flags_override_the_config(tmp_path: Path) -> None:
    import click
    from click.testing import CliRunner

    from app.cli import main
    from app.cli.root import Context, business_options

    @main.command("_show-business", hidden=True)
    @business_options
    @click.pass_obj
    def show(obj: Context, business: dict) -> None:
        b = obj.config(business=business).business
        click.echo(f"{b.margin} {b.attribution_days} {b.dormancy_days}")

    try:
        runner = CliRunner()
        base = ["--home", str(tmp_path), "--config", str(CONFIG_DIR), "_show-business"]
        cfg = load_config(CONFIG_DIR, home=tmp_path).business
        out = runner.invoke(main, base).output.split()
        assert out == [str(cfg.margin), str(cfg.attribution_days), str(cfg.dormancy_days)]
        out = runner.invoke(main, [*base, "--margin", "0.2", "--attribution-days", "5", "--dormancy-days", "21"])
        assert out.output.split() == ["0.2", "5", "21"]
        bad = runner.invoke(main, [*base, "--margin", "1.5"])
        assert bad.exit_code == 2 and "1.5" in bad.output and "0<x<=1" in bad.output
    finally:
        main.commands.pop("_show-business")


def test_tracking_one_home_does_not_leak_into_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow exports the URI it is given as MLFLOW_TRACKING_URI; a second home in the same process must still
    get its own store, and a URI the user exported must survive."""
    import mlflow

    from training import registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a, b = (load_config(CONFIG_DIR, home=tmp_path / name) for name in ("a", "b"))
    with registry.tracking(a):
        assert mlflow.get_tracking_uri().endswith("a/mlflow.db")
    assert registry.tracking_uri(b).endswith("b/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'shared.db'}")
    with registry.tracking(b):
        pass
    assert registry.tracking_uri(a).endswith("shared.db")


class _PickledScorer:
    """Stands in for the scorer classes that models registered before the data artefact pickled."""

    def __init__(self) -> None:
        self.arms = ["none", "cashback@10000"]


def test_a_model_registered_as_a_pickle_is_refused_with_the_command_to_retrain(tmp_path: Path) -> None:
    import pickle

    import mlflow
    from click.testing import CliRunner
    from mlflow.pyfunc import PythonModel

    from app.cli import main
    from training import registry

    class OldScorerModel(PythonModel):  # the shape of training.pyfunc.ScorerModel, which is gone
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return model_input

    cfg = load_config(CONFIG_DIR, home=tmp_path)
    pkl = tmp_path / "scorer.pkl"
    pkl.write_bytes(pickle.dumps(_PickledScorer()))
    with registry.tracking(cfg), mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="scorer", python_model=OldScorerModel(), artifacts={"scorer": str(pkl)})
        version = registry.register(str(info.model_uri), cfg.training.model_name)
        registry.set_alias(cfg.training.model_name, registry.CHAMPION, version)
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "batch", "--out", str(tmp_path / "d.csv")])
    assert result.exit_code == 2
    assert "registered by an older Rekindle" in result.output and "rekindle train" in result.output
    assert not (tmp_path / "d.csv").exists()


# ------------------------------------------------------------- estimator contract --
def response_model():
    from training.response import ResponseModel

    return ResponseModel()


def bootstrap_ensemble():
    from training.ensemble import BootstrapEnsemble

    return BootstrapEnsemble()


@pytest.mark.parametrize("make", [response_model, bootstrap_ensemble], ids=["ResponseModel", "BootstrapEnsemble"])
def test_the_estimators_keep_the_scikit_learn_contract(make) -> None:
    """scikit-learn's own checks of construction, parameters and cloning (their fit takes decision frames
    with named columns, not the arrays of the generic fit checks: those are the next test's)."""
    from sklearn.utils import estimator_checks as ec

    estimator = make()
    name = type(estimator).__name__
    for check in (
        ec.check_parameters_default_constructible,
        ec.check_no_attributes_set_in_init,
        ec.check_get_params_invariance,
        ec.check_set_params,
        ec.check_estimator_cloneable,
        ec.check_estimator_repr,
        ec.check_do_not_raise_errors_in_init_or_set_params,
    ):
        check(name, estimator)


def test_fit_returns_self_learns_underscored_attributes_and_predict_needs_a_fit(cfg) -> None:
    from sklearn.exceptions import NotFittedError

    from training.design import fit_design
    from training.ensemble import BootstrapEnsemble
    from training.response import ResponseModel

    frame = synthetic_decisions(cfg, 3000, 8)
    frame["player_id"] = np.arange(len(frame)) // 2  # bootstrap weights are drawn per player
    arms = discover_arms(frame, None, min_support=10).table
    model = ResponseModel(fit_design(cfg, frame, arms), n_estimators=10, min_child_samples=50)
    with pytest.raises(NotFittedError):
        model.predict_arms(frame, arms)
    params = model.get_params()
    assert model.fit(frame, frame) is model and hasattr(model, "heads_") and hasattr(model, "n_features_in_")
    assert model.get_params() == params  # fit changes no parameter
    ensemble = BootstrapEnsemble(model, n_members=2, seed=3)
    with pytest.raises(NotFittedError):
        ensemble.to_model(arms)
    assert ensemble.fit(frame, frame) is ensemble and len(ensemble.members_) == 2
    with pytest.raises(ValueError, match="unknown learner 'z'"):
        ResponseModel(model.design, learner="z").fit(frame, frame)
    with pytest.raises(ValueError, match="needs a fitted Design"):
        ResponseModel().fit(frame, frame)


def test_a_new_event_type_stays_an_arm_once_exploration_has_offered_it() -> None:
    """Marked new and offered a little since (by exploration): its history counts, without support yet."""
    hist = offers({("cashback", 10000): 500, ("box", 5000): 12})
    found = discover_arms(hist, catalog({"name": "cashback"}, {"name": "box", "rewards": [5000], "new": True}),
                          min_support=100)  # fmt: skip
    arms = found.table.set_index("arm")
    assert "box@5000" in arms.index and arms.loc["box@5000", "support"] == 12
    assert not arms.loc["box@5000", "supported"] and arms.loc["cashback@10000", "supported"]


# ---------------------------------------------------------------- deposit factors --
def returners_with_factors(true: dict[str, float], n: dict[str, int], seed: int) -> pd.DataFrame:
    """Returners of arms ``event|reward`` whose deposits are a log-normal habit times the arm's true factor."""
    rng = np.random.default_rng(seed)
    rows = []
    for arm, k in n.items():
        event, reward = arm.split("|")
        habit = np.exp(rng.normal(10, 1.0, k))
        noise = np.exp(rng.normal(-0.5, 1.0, k))  # mean 1: a heavy tail around the habit
        rows.append(
            pd.DataFrame({"event": event, "reward": int(reward), "habit": habit, "d": habit * true[arm] * noise})
        )
    return pd.concat(rows, ignore_index=True)


def test_deposit_factors_recover_well_supported_arms_and_shrink_thin_ones() -> None:
    from training.deposit_factors import deposit_factors

    true = {"bonus|10": 1.6, "bonus|30": 1.7, "spins|5": 1.0, "spins|15": 1.0, "none|0": 0.9, "login|1": 1.0}
    many = {a: 20_000 for a in true}
    f = deposit_factors(
        *(returners_with_factors(true, many, 1)[c].to_numpy() for c in ("event", "reward", "d", "habit"))
    )
    for arm, factor in true.items():
        assert f[arm] == pytest.approx(factor, rel=0.06), arm
    assert f["bonus"] == pytest.approx(1.65, rel=0.06) and f["spins"] == pytest.approx(1.0, rel=0.06)
    # a thin arm whose sample strays from its event type's factor is pulled back toward it
    thin = many | {"spins|30": 15}
    frame = returners_with_factors(true | {"spins|30": 1.0}, thin, 2)
    lucky = frame["event"].eq("spins") & frame["reward"].eq(30)
    frame.loc[lucky, "d"] *= 3.0  # its fifteen returners happened to deposit three times their habit
    f = deposit_factors(*(frame[c].to_numpy() for c in ("event", "reward", "d", "habit")))
    raw = frame.loc[lucky, "d"].sum() / frame.loc[lucky, "habit"].sum()
    assert abs(f["spins|30"] - f["spins"]) < 0.5 * abs(raw - f["spins"])


def test_deposit_factors_pool_arms_that_do_not_differ() -> None:
    """When the arms of an event type share one factor, the estimated spread between them is about nothing and
    every arm gets (nearly) the event type's factor, however noisy its own returners."""
    from training.deposit_factors import deposit_factors

    true = {"spins|5": 1.2, "spins|15": 1.2, "spins|30": 1.2, "none|0": 1.0}
    frame = returners_with_factors(true, {"spins|5": 300, "spins|15": 300, "spins|30": 300, "none|0": 3000}, 3)
    f = deposit_factors(*(frame[c].to_numpy() for c in ("event", "reward", "d", "habit")))
    raw = frame.groupby("reward").apply(lambda g: g["d"].sum() / g["habit"].sum(), include_groups=False)
    spread_raw = raw.loc[[5, 15, 30]].std()
    spread = np.std([f["spins|5"], f["spins|15"], f["spins|30"]], ddof=1)
    assert spread < 0.5 * spread_raw


def test_the_factor_deposit_model_scores_each_arm_with_its_factor_and_stays_balanced(cfg) -> None:
    from training.design import fit_design
    from training.response import ResponseModel

    frame = synthetic_decisions(cfg, 6000, 5)
    big = frame["reward"].to_numpy() == 5000
    frame.loc[big, "deposits"] *= 2.0  # the largest reward doubles what its returners deposit
    arms = discover_arms(frame, None, min_support=10).table
    design = fit_design(cfg, frame, arms)
    model = ResponseModel(design, n_estimators=40, min_child_samples=50).fit(frame, frame)
    heads = model.heads_
    assert heads.deposit_factors is not None and model.deposit_model == "factor"
    pred = model.predict_arms(frame.head(500), arms)
    size = pred.deposits / pred.p_reengage
    five = list(arms["reward"]).index(5000)
    ratio = size[:, five] / size[:, five - 1]  # every player: the same factor, of about two
    assert np.allclose(ratio, ratio[0]) and 1.5 < ratio[0] < 2.5
    returners = frame["reengaged"].to_numpy()
    own = model.predict_rows(frame, frame["event_type"].to_numpy(), frame["reward"].to_numpy())
    assert (own[1][returners] / own[0][returners]).sum() == pytest.approx(
        frame.loc[returners, "deposits"].sum(), rel=1e-6
    )


# ------------------------------------------------------------- online scoring and reasons --
@pytest.mark.parametrize("learner", ["s", "t", "offset"])
def test_the_reasons_name_what_drives_the_uplift(cfg, learner: str) -> None:
    """Players with ``sessions_7d > 0`` respond five times as strongly to the reward: the offer's uplift
    contributions (TreeSHAP, offer minus no offer) must credit sessions_7d with raising it for them and
    lowering it for the rest; for the S-learner they add up exactly to the log-odds difference."""
    from scoring.ensemble import ResponseEnsemble
    from serving.reasons import top_contributions
    from training.design import fit_design
    from training.response import ResponseModel

    def strong_half(f: pd.DataFrame) -> np.ndarray:
        return np.where(f["sessions_7d"] > 0, 0.4, 0.02)

    frame = synthetic_decisions(cfg, 20_000, 11, uplift=strong_half)
    arms = discover_arms(frame, None, min_support=10).table
    design = fit_design(cfg, frame, arms, use_match=False)
    heads = ResponseModel(design, learner=learner, n_estimators=60, min_child_samples=300).fit(frame, frame).heads_
    model = ResponseEnsemble(design, arms.reset_index(drop=True), [heads])
    test = synthetic_decisions(cfg, 2000, 12, uplift=strong_half)
    sources = {c: test[c].to_numpy(np.float32) for c in design.source_columns() if c in test}
    player = design.player_block(test)
    column = np.full(len(test), len(arms) - 1)  # login_reward@5000
    contrib, matrix = model.uplift_contributions(player, sources, column)
    assert contrib.shape == (len(test), len(design.columns))
    j = design.columns.index("sessions_7d")
    strong = test["sessions_7d"].to_numpy() > 0
    assert contrib[strong, j].mean() > 0.1 > -0.1 > contrib[~strong, j].mean()
    if learner == "s":
        pred = model.predict_arms(test)
        logit = np.log(pred.p_reengage / (1 - pred.p_reengage))
        assert np.allclose(contrib.sum(axis=1), logit[:, -1] - logit[:, 0], atol=1e-6)
    top = top_contributions(design, contrib, matrix)
    assert all(len(r) <= 3 for r in top)
    named = [{c["feature"] for c in r} for r in top]
    assert np.mean(["sessions_7d" in r for r in named]) > 0.8  # with the reward itself, the main reasons
    noise = [c for c in design.player_numeric if c not in ("sessions_7d", "sessions_30d")]  # drive nothing
    assert max(np.mean([c in r for r in named]) for c in noise) < 0.3
    first = next(r for r in top if r and r[0]["feature"] == "sessions_7d")[0]
    assert first["direction"] == ("raises" if first["effect"] > 0 else "lowers")


def test_top_contributions_read_levels_and_leave_out_what_contributes_nothing() -> None:
    from scoring.design import Design
    from serving.reasons import top_contributions

    design = Design(["a", "b"], {"channel": ["ads", "organic"]}, ["none", "cashback"], {}, {}, {}, use_match=False)
    contrib = np.zeros((2, len(design.columns)))
    contrib[0, [0, 2, design.columns.index("arm_event")]] = [0.1, -0.5, 0.3]
    matrix = np.zeros((2, len(design.columns)), np.float32)
    matrix[0, 2], matrix[0, design.columns.index("arm_event")], matrix[0, 0] = 1, 1, np.nan
    top = top_contributions(design, contrib, matrix)
    assert [(r["feature"], r["value"], r["direction"]) for r in top[0]] == [
        ("channel", "organic", "lowers"), ("arm_event", "cashback", "raises"), ("a", None, "raises"),
    ]  # fmt: skip
    assert top[1] == []
    with pytest.raises(ValueError, match="contributions for a design of"):
        top_contributions(design, contrib[:, :3], matrix)


def test_one_stacked_matrix_for_all_members_gives_the_same_numbers(cfg) -> None:
    """The online path's scoring (every arm, with the members' spread, one matrix shared by the members)
    equals the batch's (each member arm by arm, the spread of one arm at a time)."""
    from training.design import fit_design
    from training.ensemble import BootstrapEnsemble
    from training.response import ResponseModel

    frame = synthetic_decisions(cfg, 4000, 8)
    frame["player_id"] = np.arange(len(frame)) // 2
    arms = discover_arms(frame, None, min_support=10).table
    base = ResponseModel(fit_design(cfg, frame, arms), n_estimators=20, min_child_samples=50)
    model = BootstrapEnsemble(base, n_members=3, seed=1).fit(frame, frame).to_model(arms)
    rows = frame.head(700)  # 700 x 4 arms: more than one stacked slice
    point, spread = model.predict_all_arms_with_spread(rows, margin=0.3)
    want = model.predict_arms(rows)
    for field in ("p_reengage", "deposits", "cost"):
        assert np.allclose(getattr(point, field), getattr(want, field), rtol=1e-6, atol=1e-9), field
    for j in range(1, len(arms)):
        one = model.spread(rows, np.full(len(rows), j), 0.3, want)
        assert np.allclose(spread.net[:, j], one.net, rtol=1e-6) and np.allclose(spread.reengage[:, j], one.reengage)
    assert (spread.net[:, 1:] > 0).all()


def small_ensemble(cfg, n: int, *, seed: int, trees: int):  # type: ignore[no-untyped-def]
    """A two-member bootstrap ensemble fitted on ``n`` synthetic decisions (two per player)."""
    from training.design import fit_design
    from training.ensemble import BootstrapEnsemble
    from training.response import ResponseModel

    frame = synthetic_decisions(cfg, n, seed)
    frame["player_id"] = np.arange(len(frame)) // 2
    arms = discover_arms(frame, None, min_support=10).table
    base = ResponseModel(fit_design(cfg, frame, arms), n_estimators=trees, min_child_samples=50)
    return BootstrapEnsemble(base, n_members=2, seed=seed % 7 or 1).fit(frame, frame).to_model(arms)


def test_the_compiled_model_gives_lightgbms_numbers_and_is_cached(cfg, tmp_path: Path) -> None:
    """The batch's compiled boosters (lleaves) against LightGBM's own, on a call large enough to use them."""
    from scoring.heads import COMPILED_MIN_ROWS

    model = small_ensemble(cfg, 3000, seed=8, trees=15)
    rows = synthetic_decisions(cfg, COMPILED_MIN_ROWS + 500, 9)
    want = model.predict_arms(rows)
    names: list[str] = []
    model.compile(tmp_path / "compiled", each=names.append)
    assert sorted(names) == sorted(f"m{i}:{h}" for i, m in enumerate(model.members) for h in m.boosters)
    assert all(m.compiled for m in model.members)
    got = model.predict_arms(rows)
    for field in ("p_reengage", "deposits", "cost"):
        assert np.allclose(getattr(got, field), getattr(want, field), rtol=1e-9, atol=1e-12), field
    assert len(list((tmp_path / "compiled").glob("*.o"))) == len(names)  # one object file per booster
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "compiled").glob("*.o")}
    model.compile(tmp_path / "compiled")  # from the cache: nothing compiled again
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "compiled").glob("*.o")} == stamps


def test_a_model_lleaves_cannot_compile_is_scored_by_lightgbm_with_the_same_numbers(
    cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch compiles a large model; when the compiler refuses a booster, the batch says why and scores
    with LightGBM (nothing half-compiled is left to score with)."""
    import scoring.compiled
    from scoring.heads import COMPILED_MIN_ROWS
    from serving.batch import compile_model

    model = small_ensemble(cfg, 2000, seed=3, trees=10)
    rows = synthetic_decisions(cfg, COMPILED_MIN_ROWS + 100, 4)
    want = model.predict_arms(rows)
    model.members[0].compiled["stale"] = object()  # what an earlier, partial compile could have left

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("lleaves: unsupported decision type in tree 3\nmore detail")

    monkeypatch.setattr(scoring.compiled, "compile_all", refuse)
    assert compile_model(model, tmp_path / "compiled") == "lleaves: unsupported decision type in tree 3"
    assert not any(m.compiled for m in model.members)
    got = model.predict_arms(rows)
    for field in ("p_reengage", "deposits", "cost"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field
    assert compile_model(model, tmp_path / "compiled") is not None  # and again: no state from the first try
