"""experiments/selection_bound.py: how well a rule can be chosen from a history of a given size (issue 12)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import selection_bound
from experiments.selection_bound import ab_test_power, cells, choose_rules, plot_power


def planted(seed: int, *, n: int = 60_000, noise: float = 3_000.0):
    """Three segments and arms none, a, b, c (columns 0-3). Arm a is worth 100 everywhere; b 300 in segment
    "x" and -100 elsewhere; c -50 everywhere. Realised net values are the truth plus normal noise."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["x", "y", "z"], n)
    base = rng.gamma(2.0, 400.0, n)
    inc = np.tile([0.0, 100.0, -100.0, -50.0], (n, 1))
    inc[segment == "x", 2] = 300.0
    truth_net = base[:, None] + inc
    arm = rng.integers(0, 4, n)
    realised = truth_net[np.arange(n), arm] + rng.normal(0, noise, n)
    test = rng.random(n) < 0.3
    return segment, arm, realised, truth_net, test


def test_the_cells_hold_the_truth_and_the_outcomes_noise() -> None:
    c = cells(*planted(1))
    assert c.segments == ["x", "y", "z"]
    assert np.allclose(c.effect[:, 1:], [[100, 300, -50], [100, -100, -50], [100, -100, -50]])
    assert np.allclose(np.sqrt(c.row_var[:, 1:]), 3_000, rtol=0.06)  # the residuals, not the players' spread
    assert np.allclose(c.held_out_share, 1 / 3, atol=0.02)


def test_with_no_noise_the_segment_rule_is_the_truths_and_the_single_arm_the_best() -> None:
    c = cells(*planted(2))
    ch = choose_rules(c, np.inf, 10, np.random.default_rng(0))
    share_x = c.held_out_share[0]
    assert ch.right_single.all()
    assert np.allclose(ch.single, 1.0)
    # segment x takes b (300), the others a (100): against a for everyone
    assert np.allclose(ch.segment_rule, (share_x * 300 + (1 - share_x) * 100) / 100)
    assert np.allclose(ch.guarded, ch.segment_rule)


def test_more_rows_choose_better_and_the_guard_never_takes_a_rule_worse_on_average() -> None:
    c = cells(*planted(3, noise=20_000.0))
    rng = np.random.default_rng(4)
    small, large = choose_rules(c, 1.0, 2000, rng), choose_rules(c, 30.0, 2000, rng)
    assert small.right_single.mean() < large.right_single.mean()
    assert small.segment_rule.mean() < large.segment_rule.mean()
    assert large.segment_rule.mean() > 1.5  # segment x's arm found with 30x the rows
    assert small.guarded.mean() >= small.single.mean()


def test_an_oracles_shortlist_narrows_the_choice() -> None:
    c = cells(*planted(5, noise=20_000.0))
    rng = np.random.default_rng(6)
    every, shortlist = choose_rules(c, 1.0, 2000, rng), choose_rules(c, 1.0, 2000, rng, top=2)
    assert shortlist.right_single.mean() > every.right_single.mean()
    assert np.isfinite(shortlist.segment_rule).all()


def test_a_shortlist_of_one_leaves_each_segment_the_single_arm_or_no_offer() -> None:
    c = cells(*planted(7))
    ch = choose_rules(c, 1.0, 500, np.random.default_rng(8), shortlist=1)
    assert np.isclose(ch.segment_rule, ch.single).mean() > 0.95  # arm a gains everywhere: the rule is a for all
    free = choose_rules(c, 1.0, 500, np.random.default_rng(8))
    assert free.segment_rule.mean() > ch.segment_rule.mean() + 0.5  # without it, segment x finds arm b


def test_the_guards_chance_is_drawn(tmp_path) -> None:
    out = plot_power(cells(*planted(10)), tmp_path / "power.png", "planted")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_the_ab_tests_floor_shrinks_with_the_rows_and_finds_big_gains_more_often() -> None:
    c = cells(*planted(9))
    assert c.held_out_rows == int(planted(9)[4].sum())
    assert abs(c.held_out_residual_sd - 3_000) < 100
    assert np.isclose(c.best_single_value(), 100, atol=1)
    share_x = c.held_out_share[0]
    assert np.isclose(c.segment_rule_value(), share_x * 300 + (1 - share_x) * 100, atol=1)
    se, power = ab_test_power(c, [1.05, 1.5, 3.0], 10_000)
    assert np.isclose(se, 2 * c.held_out_residual_sd / 100)
    assert power[0] < power[1] < power[2]
    assert power[0] < 0.07  # 5 KRW better at s.e. 60: hardly more often than the test's 5% at no gain
    assert abs(power[2] - 0.954) < 0.01  # 200 KRW better is 3.3 s.e.: found when the noise is above -1.7 s.e.


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--draws", "0"], "--draws 0"),
        (["--shortlist", "0"], "--shortlist 0"),
        (["--top", "-1"], "--top -1"),
        (["--multiples", "1,0"], "--multiples '1,0'"),
        (["--multiples", "x"], "--multiples 'x'"),
    ],
)
def test_options_that_cannot_run_are_refused_naming_the_value(
    option: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before any world is read (the home here holds none), naming the value and what was expected;
    they divided by zero before."""
    monkeypatch.setattr(sys, "argv", ["selection_bound", "--home", str(tmp_path), *option])
    with pytest.raises(SystemExit) as exit_:
        selection_bound.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "expected" in err
