"""LightGBM boosters compiled to machine code, for predictions over a whole base.

lleaves compiles a booster's trees with LLVM into a native function that gives LightGBM's own numbers
(to ~1e-14 here) three to four times faster on this machine: it is the tool made for exactly this, so
the batch job uses it rather than hand-written tree code. A compilation takes about ten seconds per
booster of 300 trees; the object files are cached by the booster's content (SHA-256 of its model text),
so a model is compiled once per home, and a new model version only where its trees changed.

lleaves 1.x drives LLVM through llvmlite's legacy pass manager, which llvmlite 0.44 removed: the lock
keeps llvmlite below 0.44.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np


class CompiledBooster:
    """One compiled booster: ``predict(mat)`` as ``lgb.Booster.predict(mat)`` (transformed output)."""

    def __init__(self, model: Any, threads: int) -> None:
        self.model, self.threads = model, threads

    def predict(self, mat: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(np.ascontiguousarray(mat, dtype=np.float64), n_jobs=self.threads))


def compile_booster(booster: lgb.Booster, cache: Path, threads: int = 2) -> CompiledBooster:
    """``booster`` compiled, from ``cache`` when these trees were compiled before."""
    import lleaves

    text = booster.model_to_string()
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    cache.mkdir(parents=True, exist_ok=True)
    source, obj = cache / f"{digest}.txt", cache / f"{digest}.o"
    if not source.is_file():
        tmp = source.with_name(source.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(source)
    model = lleaves.Model(model_file=str(source))
    model.compile(cache=str(obj))
    return CompiledBooster(model, threads)


def compile_all(
    boosters: dict[str, lgb.Booster], cache: Path, threads: int = 2, done: Callable[[str], None] | None = None
) -> dict[str, CompiledBooster]:
    """Every booster of ``boosters`` compiled, ``threads`` compilations at a time; ``done(name)`` after each."""

    def one(name: str) -> tuple[str, CompiledBooster]:
        got = compile_booster(boosters[name], cache, threads)
        if done is not None:
            done(name)
        return name, got

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return dict(pool.map(one, list(boosters)))
