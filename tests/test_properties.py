"""Properties that must hold for any input (hypothesis): the policy's choice and the decision timeline."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from features.timeline import Timeline
from training.policy import choose

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)


@st.composite
def decision_problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Rows x arms of gains and costs (column 0: no offer, nothing gained or spent), a mask of the arms each
    row may get, and a budget between nothing and what the unconstrained choice would spend."""
    n = draw(st.integers(1, 40))
    k = draw(st.integers(2, 6))
    values = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)
    gain = draw(arrays(np.float64, (n, k), elements=values))
    cost = draw(arrays(np.float64, (n, k), elements=st.floats(0, 1e4, allow_nan=False, width=32)))
    gain[:, 0] = cost[:, 0] = 0.0
    allowed = draw(arrays(np.bool_, (n, k)))
    allowed[:, 0] = True
    free = choose(gain, cost, allowed=allowed)
    budget = draw(st.floats(0, 1, allow_nan=False)) * float(free.cost.sum())
    return gain, cost, allowed, budget


@SETTINGS
@given(decision_problems())
def test_the_budget_is_never_exceeded(problem) -> None:
    gain, cost, allowed, budget = problem
    c = choose(gain, cost, budget=budget, allowed=allowed)
    assert c.cost.sum() <= budget * (1 + 1e-9) + 1e-6


@SETTINGS
@given(decision_problems())
def test_no_row_gets_an_arm_it_may_not_get(problem) -> None:
    gain, cost, allowed, budget = problem
    for b in (None, budget):
        c = choose(gain, cost, budget=b, allowed=allowed)
        assert allowed[np.arange(len(gain)), c.arm].all()
        assert (c.gain >= 0).all() or b is not None  # without a budget, nothing worse than no offer


@SETTINGS
@given(decision_problems())
def test_the_choice_is_deterministic_and_ties_go_to_the_first_arm(problem) -> None:
    gain, cost, allowed, budget = problem
    twin = np.hstack([gain, gain[:, 1:]])  # every offer arm twice: the same gain and cost
    twin_cost = np.hstack([cost, cost[:, 1:]])
    twin_allowed = np.hstack([allowed, allowed[:, 1:]])
    a = choose(twin, twin_cost, budget=budget, allowed=twin_allowed)
    b = choose(twin.copy(), twin_cost.copy(), budget=budget, allowed=twin_allowed.copy())
    assert np.array_equal(a.arm, b.arm)
    assert (a.arm < gain.shape[1]).all()  # never the later copy of an arm
    assert np.array_equal(a.arm, choose(gain, cost, budget=budget, allowed=allowed).arm)


@st.composite
def timelines(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events (player, time, amount) and interval queries whose ends are among a few bounds."""
    bounds = np.unique(draw(arrays(np.int64, st.integers(1, 8), elements=st.integers(0, 50))))
    m = draw(st.integers(0, 60))
    player = draw(arrays(np.int64, m, elements=st.integers(0, 5)))
    time = draw(arrays(np.int64, m, elements=st.integers(-5, 55)))
    amount = draw(arrays(np.int64, m, elements=st.integers(1, 1000)))
    q = draw(st.integers(1, 30))
    qp = draw(arrays(np.int64, q, elements=st.integers(0, 6)))
    lo = draw(arrays(np.int64, q, elements=st.sampled_from(bounds.tolist())))
    hi = draw(arrays(np.int64, q, elements=st.sampled_from(bounds.tolist())))
    return bounds, player, time, amount, qp, np.column_stack([np.minimum(lo, hi), np.maximum(lo, hi)])


@SETTINGS
@given(timelines(), st.booleans())
def test_the_timeline_counts_and_sums_exactly_what_a_loop_would(case, left_open: bool) -> None:
    bounds, player, time, amount, qp, span = case
    line = Timeline(bounds, player, time, amount.astype(float))
    lo, hi = span[:, 0], span[:, 1]
    a, b = line.span(qp, lo, hi, left_open=left_open)
    for i in range(len(qp)):
        mine = player == qp[i]
        inside = (time > lo[i]) & (time <= hi[i]) if left_open else (time >= lo[i]) & (time < hi[i])
        assert b[i] - a[i] == (mine & inside).sum()
        assert line.total(a[i : i + 1], b[i : i + 1])[0] == amount[mine & inside].sum()
    exists = Timeline(bounds, player, time)  # built without amounts: does any event fall in the interval?
    any_in = exists.count(qp, lo, hi, left_open=left_open) > 0
    assert np.array_equal(any_in, b > a)
