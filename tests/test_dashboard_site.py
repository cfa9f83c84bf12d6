"""The dashboard's shared pieces: aggregates kept until their data moves, amounts and dates as people read them."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from core.config import load_config
from serving.dashboard import site as site_module
from serving.dashboard.site import Site, krw, pct


def test_memo_computes_once_per_key_and_refreshes_a_stale_value_in_the_background(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Site(lambda: load_config(home=tmp_path))
    calls: list[int] = []
    release = threading.Event()

    def compute() -> int:
        calls.append(1)
        if len(calls) == 3:  # the background refresh: slow, and the page must not wait for it
            release.wait(5)
        return len(calls)

    assert s.memo("x", "batch-1", compute) == 1
    assert s.memo("x", "batch-1", compute) == 1 and len(calls) == 1  # kept while the key holds
    assert s.memo("x", "batch-2", compute) == 2  # a new batch: computed again at once
    monkeypatch.setattr(site_module, "MEMO_SECONDS", 0.0)
    time.sleep(0.01)
    started = time.perf_counter()
    assert s.memo("x", "batch-2", compute) == 2  # stale: answered from memory ...
    assert time.perf_counter() - started < 1.0  # ... without waiting for the refresh
    assert s.memo("x", "batch-2", compute) == 2 and len(calls) == 3  # one refresh at a time
    release.set()
    deadline = time.monotonic() + 5
    while s._memo["x"][2] != 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s._memo["x"][2] == 3  # the refreshed value replaced the stale one


def test_amounts_shares_and_dates_read_as_people_read_them(tmp_path) -> None:
    assert krw(1234567.4) == "1,234,567 KRW" and krw(None) == "-" and krw(float("nan")) == "-"
    assert pct(0.1234) == "12.3%" and pct(0.05, signed=True) == "+5.0%" and pct(None) == "-"
    s = Site(lambda: load_config(home=tmp_path))  # business.time_zone: Asia/Seoul, UTC+9
    assert s.when(pd.Timestamp("2026-11-30 10:00")) == "2026-11-30 19:00 KST"
    assert s.when(pd.Timestamp("2026-11-30 15:30:05"), seconds=True) == "2026-12-01 00:30:05 KST"
    assert s.when(None) == ""
