"""Lab tests build kernels and boot QEMU: they run only when asked for with ``-m lab``.

A plain ``pytest`` must never start a 10-minute kernel build as a side effect,
so unless the marker expression names ``lab`` positively, lab items are skipped.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    expr = config.getoption("markexpr") or ""
    if "lab" in expr and "not lab" not in expr:
        return
    skip = pytest.mark.skip(reason="lab test: run with 'pytest -m lab tests/lab' (root, QEMU, kernel build)")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)
