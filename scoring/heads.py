"""One fitted response model: its LightGBM heads and what they predict for any arm.

The window's deposits are a hurdle: ``E[deposits] = P(re-engage) x E[deposits |
re-engaged]``, and the reward cost is ``P(claim) x payout per claim``. Heads,
by name (``<head>/<group>``):

- ``reengage/all`` (S-learner), or ``reengage/control`` and ``reengage/treated``
  (T-learner; the offset learner's treated head adds to the control head's log-odds);
- ``deposits/all``: E[deposits | re-engaged], times ``deposit_scale`` (the
  calibration that balances the training returners' deposits); with
  ``deposit_factors`` it reads the player's columns only (the arm's are blank)
  and each arm multiplies it by its own factor;
- ``claim``: P(bonus paid > 0) of an offer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.compiled import CompiledBooster
from scoring.design import NONE, Design

LEARNERS = ("s", "t", "offset")


@dataclass
class ArmPredictions:
    """Per row and arm (columns in the order of ``arms``): expected values in the attribution window."""

    arms: pd.DataFrame  # the arm table, "none" first
    p_reengage: np.ndarray  # (n, k)
    deposits: np.ndarray  # (n, k)
    cost: np.ndarray  # (n, k)

    def incremental_net(self, margin: float) -> np.ndarray:
        net = margin * self.deposits - self.cost
        return net - net[:, [0]]

    def incremental_reengage(self) -> np.ndarray:
        return self.p_reengage - self.p_reengage[:, [0]]


def factor_key(event_type: object, reward: object = None) -> str:
    """The key of an arm's (``event|reward``) or an event type's (``event``) deposit-size factor."""
    return str(event_type) if reward is None else f"{event_type}|{int(float(str(reward)))}"


def arm_factors(factors: dict[str, float], event_type: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """The factor of arm ``(event_type[i], reward[i])``: by arm, else by event type, else 1 (looked up once
    per distinct arm: a batch asks for millions of rows of a few arms)."""
    event_type, reward = np.atleast_1d(event_type), np.atleast_1d(reward)
    if not len(event_type):
        return np.zeros(0)
    pairs = pd.MultiIndex.from_arrays([pd.Index(event_type, dtype=object), pd.Index(reward)])
    codes, uniq = pd.factorize(pairs)
    values = np.array(
        [factors.get(factor_key(e, r), factors.get(factor_key(e), 1.0)) for e, r in uniq], dtype=np.float64
    )
    return values[codes]


STACKED_ROWS = 20_000  # (row, arm) pairs scored in one matrix; larger inputs go arm by arm
COMPILED_MIN_ROWS = 20_000  # fewer rows: LightGBM's own call (a compiled call's set-up is not worth it)


@dataclass
class ResponseHeads:
    """The boosters of one fitted response model and how to combine them.

    ``deposit_factors`` (None: the deposits head reads the arm's columns itself): the deposits head sees the
    player's columns only, and an arm's expected deposit size is that times its factor, looked up by arm
    (:func:`factor_key`), else by event type, else 1."""

    learner: str
    boosters: dict[str, lgb.Booster]
    deposit_scale: float = 1.0
    deposit_factors: dict[str, float] | None = None
    _factors: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)
    # head -> the same booster compiled (scoring.compiled), used for large predictions once compiled
    compiled: dict[str, CompiledBooster] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; expected one of {list(LEARNERS)}")
        need = ["deposits/all", "claim"]
        need += ["reengage/all"] if self.learner == "s" else ["reengage/control", "reengage/treated"]
        missing = [h for h in need if h not in self.boosters]
        if missing:
            raise ValueError(f"a {self.learner}-learner needs the heads {missing} too (has {sorted(self.boosters)})")

    def _predict(self, head: str, mat: np.ndarray, num_iteration: int | None = None) -> np.ndarray:
        """One head's predictions: compiled when it is and the rows are many, else LightGBM's."""
        fast = self.compiled.get(head)
        if fast is not None and num_iteration is None and len(mat) >= COMPILED_MIN_ROWS:
            return fast.predict(mat)
        return np.asarray(self.boosters[head].predict(mat, num_iteration=num_iteration))

    def _reengage(self, mat: np.ndarray, offer: bool, num_iteration: int | None = None) -> np.ndarray:
        """P(re-engage); the offset learner's offer head adds to the control head's log-odds."""
        if self.learner == "s":
            return self._predict("reengage/all", mat, num_iteration)
        if self.learner == "offset" and offer:
            heads = (self.boosters["reengage/control"], self.boosters["reengage/treated"])
            raw = sum(np.asarray(h.predict(mat, num_iteration=num_iteration, raw_score=True)) for h in heads)
            return np.asarray(1.0 / (1.0 + np.exp(-raw)))
        return self._predict("reengage/treated" if offer else "reengage/control", mat, num_iteration)

    def _deposits(self, mat: np.ndarray, num_iteration: int | None = None) -> np.ndarray:
        """E[deposits | re-engaged] from the deposits head, balanced on the training returners (with factors:
        ``mat`` holds the player's columns and NaN arm columns, and the arm's factor is applied after)."""
        return self._predict("deposits/all", mat, num_iteration) * self.deposit_scale

    def factor(self, event_type: np.ndarray, reward: np.ndarray) -> np.ndarray:
        """Each arm's deposit-size factor (1 without factors)."""
        return arm_factors(self.deposit_factors or {}, event_type, reward)

    def arm_table_factors(self, arms: pd.DataFrame) -> np.ndarray:
        """:meth:`factor` of every arm of an arm table, remembered (the online path asks for it on every call)."""
        key = tuple(arms["arm"])
        got = self._factors.get(key)
        if got is None:
            got = self._factors[key] = self.factor(arms["event_type"].to_numpy(), arms["reward"].to_numpy())
        return got

    @staticmethod
    def neutral(mat: np.ndarray, design: Design) -> np.ndarray:
        """``mat`` with its arm columns blanked (NaN): what the deposits head of a factor model reads."""
        out = mat.copy()
        out[:, len(design.columns) - len(design.arm_columns) :] = np.nan
        return out

    def _claim(self, mat: np.ndarray, num_iteration: int | None = None) -> np.ndarray:
        return self._predict("claim", mat, num_iteration)

    def predict_arms(
        self, design: Design, X: pd.DataFrame, arms: pd.DataFrame, num_iteration: int | None = None
    ) -> ArmPredictions:
        """Every arm of ``arms`` (the arm table, "none" first) for every row of ``X``."""
        player = design.player_block(X)
        n, k = len(X), len(arms)
        if n * k <= STACKED_ROWS:
            return self._predict_stacked(design, X, arms, player, num_iteration)
        p, dep, cost = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k))
        size = None
        if self.deposit_factors is not None:  # one prediction for every arm, scaled by each arm's factor
            size = self._deposits(self.neutral(design.matrix(X, NONE, 0.0, player=player), design), num_iteration)
            factors = self.factor(arms["event_type"].to_numpy(), arms["reward"].to_numpy())
        for j, (event, reward, payout) in enumerate(
            zip(arms["event_type"], arms["reward"], arms["payout"], strict=True)
        ):
            mat = design.matrix(X, event, reward, player=player)
            offer = event != NONE
            p[:, j] = self._reengage(mat, offer, num_iteration)
            dep[:, j] = p[:, j] * (self._deposits(mat, num_iteration) if size is None else size * factors[j])
            if offer:
                cost[:, j] = self._claim(mat, num_iteration) * payout
        return ArmPredictions(arms, p, dep, cost)

    def _predict_stacked(
        self, design: Design, X: pd.DataFrame, arms: pd.DataFrame, player: np.ndarray, num_iteration: int | None
    ) -> ArmPredictions:
        """:meth:`predict_arms` with every (row, arm) pair in one matrix and one call per booster: the same
        numbers, several times faster for the few rows of an online call (a booster call costs ~0.1 ms)."""
        return self.evaluate_stacked(Stacked.build(design, X, arms, player), num_iteration)

    def evaluate_stacked(self, st: Stacked, num_iteration: int | None = None) -> ArmPredictions:
        """This member's predictions on a stacked matrix (built once, shared by the members of an ensemble)."""
        p = np.zeros(len(st.mat))
        for flag in (False, True):
            m = st.offer == flag
            if m.any():
                p[m] = self._reengage(st.mat[m], flag, num_iteration)
        if self.deposit_factors is not None:
            size = self._deposits(st.blank, num_iteration)[st.rows]
            size = size * np.tile(self.arm_table_factors(st.arms), st.n)
        else:
            size = self._deposits(st.mat, num_iteration)
        cost = np.zeros(len(st.mat))
        if st.offer.any():
            cost[st.offer] = (
                self._claim(st.mat[st.offer], num_iteration)
                * np.tile(st.arms["payout"].to_numpy(np.float64), st.n)[st.offer]
            )
        shape = (st.n, len(st.arms))
        return ArmPredictions(st.arms, p.reshape(shape), (p * size).reshape(shape), cost.reshape(shape))

    def uplift_contributions(self, offer: np.ndarray, none: np.ndarray) -> np.ndarray:
        """Per row, each column's contribution (LightGBM's ``pred_contrib``, TreeSHAP) to the log-odds of
        re-engaging under the offer (model matrix ``offer``) minus under no offer (``none``, the same player):
        which of the player's features and the arm's make the offer lift (or lower) re-engagement."""
        contrib = {"pred_contrib": True}
        if self.learner == "s":
            head = self.boosters["reengage/all"]
            diff = np.asarray(head.predict(offer, **contrib)) - np.asarray(head.predict(none, **contrib))
        else:
            control, treated = self.boosters["reengage/control"], self.boosters["reengage/treated"]
            with_offer = np.asarray(treated.predict(offer, **contrib))
            if self.learner == "offset":
                with_offer = with_offer + np.asarray(control.predict(offer, **contrib))
            diff = with_offer - np.asarray(control.predict(none, **contrib))
        return diff[:, :-1]  # the last column is the expected value (the bias), not a feature's

    def predict_rows(
        self,
        design: Design,
        X: pd.DataFrame,
        event_type: np.ndarray,
        reward: np.ndarray,
        *,
        mat: np.ndarray | None = None,
        base_size: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected (re-engagement, deposits, cost) of arm ``(event_type[i], reward[i])`` for row ``i``.
        ``mat``: the model matrix of those rows and arms, when the caller built it (once for several
        members); ``base_size``: a factor model's deposits head on the rows' neutral matrix (the same for
        every arm of a row)."""
        event_type = np.asarray(event_type, dtype=object)
        reward = np.asarray(reward, dtype=np.float64)
        mat = design.matrix(X, event_type, reward) if mat is None else mat
        offer = event_type != NONE
        p, dep, cost = np.zeros(len(X)), np.zeros(len(X)), np.zeros(len(X))
        if self.deposit_factors is not None:
            base = self._deposits(self.neutral(mat, design)) if base_size is None else base_size
            size = base * self.factor(event_type, reward)
        for flag in (False, True):
            m = offer == flag
            if m.any():
                p[m] = self._reengage(mat[m], flag)
                dep[m] = p[m] * (self._deposits(mat[m]) if self.deposit_factors is None else size[m])
        if offer.any():
            cost[offer] = self._claim(mat[offer]) * design.payout_of(event_type[offer], reward[offer])
        return p, dep, cost


@dataclass
class Stacked:
    """Every (row, arm) pair of some rows in one model matrix: what each head reads, built once."""

    arms: pd.DataFrame
    n: int
    mat: np.ndarray  # (n * k, columns), row-major: row i's arms are rows i*k .. i*k+k-1
    offer: np.ndarray  # (n * k,) whether the pair's arm is an offer
    rows: np.ndarray  # (n * k,) the input row of each pair
    blank: np.ndarray  # (n, columns) the player's columns with the arm's blanked (a factor model's deposits)

    @classmethod
    def build(cls, design: Design, X: pd.DataFrame, arms: pd.DataFrame, player: np.ndarray | None = None) -> Stacked:
        player = design.player_block(X) if player is None else player
        n, k = len(X), len(arms)
        event = np.tile(arms["event_type"].to_numpy(object), n)
        reward = np.tile(arms["reward"].to_numpy(np.float64), n)
        rows = np.repeat(np.arange(n), k)
        sources = X[[c for c in design.source_columns() if c in X]]  # all the arm columns read of the frame
        mat = np.hstack([player[rows], design.arm_block(sources.iloc[rows], event, reward)])
        blank = ResponseHeads.neutral(np.hstack([player, design.arm_block(sources, NONE, 0.0)]), design)
        return cls(arms, n, mat, event != NONE, rows, blank)
