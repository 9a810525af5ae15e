from __future__ import annotations

import pytest

from cdr import device
from cdr.device import threads_per_worker


def test_threads_split_the_users_limit_or_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device.os, "cpu_count", lambda: 8)
    assert threads_per_worker(1, {"OMP_NUM_THREADS": "1"}) == 1
    assert threads_per_worker(2, {"OMP_NUM_THREADS": "6"}) == 3
    assert threads_per_worker(2, {}) == 4
    assert threads_per_worker(16, {}) == 1  # at least one each
    assert threads_per_worker(2, {"OMP_NUM_THREADS": "junk"}) == 4
    assert threads_per_worker(2, {"OMP_NUM_THREADS": "0"}) == 4
