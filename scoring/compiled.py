"""LightGBM boosters compiled to machine code, for predictions over a whole base.

lleaves compiles a booster's trees with LLVM into a native function that gives LightGBM's own numbers
(to ~1e-14 here) three to four times faster on this machine: it is the tool made for exactly this, so
the batch job uses it rather than hand-written tree code. A compilation takes about ten seconds per
booster of 300 trees, two at a time in worker processes (LLVM holds the GIL); the object files are
cached by the booster's content (SHA-256 of its model text), so a model is compiled once per home, and a
new model version only where its trees changed.

lleaves 1.x drives LLVM through llvmlite's legacy pass manager, which llvmlite 0.44 removed: the lock
keeps llvmlite below 0.44.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
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


def _paths(booster: lgb.Booster, cache: Path) -> tuple[Path, Path]:
    """The booster's model text, written under ``cache`` by its content, and where its object file goes."""
    text = booster.model_to_string()
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    cache.mkdir(parents=True, exist_ok=True)
    source, obj = cache / f"{digest}.txt", cache / f"{digest}.o"
    if not source.is_file():
        tmp = source.with_name(f"{source.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(source)
    return source, obj


def _load(source: Path, obj: Path) -> Any:
    """The compiled model of ``source``: from the object file ``obj``, compiled into it first if missing."""
    import lleaves

    model = lleaves.Model(model_file=str(source))
    model.compile(cache=str(obj))
    return model


def _compile_file(source: str, obj: str) -> str:
    """In a worker process (LLVM's compilation holds the GIL): compile ``source`` into ``obj``."""
    _load(Path(source), Path(obj))
    return obj


def compile_booster(booster: lgb.Booster, cache: Path, threads: int = 2) -> CompiledBooster:
    """``booster`` compiled, from ``cache`` when these trees were compiled before."""
    return CompiledBooster(_load(*_paths(booster, cache)), threads)


def compile_all(
    boosters: dict[str, lgb.Booster], cache: Path, threads: int = 2, done: Callable[[str], None] | None = None
) -> dict[str, CompiledBooster]:
    """Every booster of ``boosters`` compiled, the missing ones in ``threads`` worker processes at a time
    (LLVM holds the GIL); ``done(name)`` after each."""
    paths = {name: _paths(b, cache) for name, b in boosters.items()}
    todo = {name: p for name, p in paths.items() if not p[1].is_file()}
    if todo:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding LightGBM's threads
        with ProcessPoolExecutor(max_workers=max(1, min(threads, len(todo))), mp_context=ctx) as pool:
            jobs = {pool.submit(_compile_file, str(s), str(o)): name for name, (s, o) in todo.items()}
            for job in as_completed(jobs):
                job.result()
                if done is not None:
                    done(jobs[job])
    out = {name: CompiledBooster(_load(*p), threads) for name, p in paths.items()}
    if done is not None:
        for name in paths:
            if name not in todo:
                done(name)
    return out
