"""Parsing hmm-tests' kselftest (TAP 13) output.

Result lines are ``ok N name``, ``not ok N name``, ``ok N # SKIP reason``
(kselftest.h ``ksft_test_result_*``), then ``# PASSED: a / b tests passed.`` or
``# FAILED: …`` and ``# Totals: pass:… fail:… xfail:… xpass:… skip:… error:…``.

The 6.1 harness counts the device_coherent variants as "ok" even though their
setup prints ``SKIP DEVICE_COHERENT not available`` (``SKIP(exit(0), …)``);
6.12 reports them as skip. :attr:`HmmTestsResult.device_private` counts the
device_private tests alone, which is what the lab asserts on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["HmmTestsResult", "parse_hmm_tests"]

_RESULT = re.compile(r"^(ok|not ok) (\d+) (?:# (SKIP|XFAIL|error)\b ?)?(.*)$")
_TOTALS = re.compile(r"^# Totals: pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+) error:(\d+)")
_SUMMARY = re.compile(r"^# (PASSED|FAILED): (\d+) / (\d+) tests passed\.")
_PLAN = re.compile(r"^1\.\.(\d+)$")
# "#            OK  hmm.hmm_device_private.open_close" names the test even when the
# ok/not ok line carries a skip reason instead of the name.
_VERDICT = re.compile(r"^#\s+(OK|FAIL|SKIP)\s+(\S+)$")


@dataclass
class HmmTestsResult:
    """Per-test statuses and the harness' own summary."""

    planned: int | None = None
    tests: dict[str, str] = field(default_factory=dict)  # name -> pass | fail | skip
    totals: dict[str, int] = field(default_factory=dict)
    summary: str | None = None

    def count(self, status: str, variant: str | None = None) -> int:
        """Tests with ``status``, optionally only those of fixture variant ``variant``."""
        return sum(1 for name, st in self.tests.items()
                   if st == status and (variant is None or f".{variant}." in name))

    @property
    def variants(self) -> bool:
        """Whether the harness names fixture variants (``hmm.hmm_device_private.migrate``): hmm-tests
        gained them with device-coherent memory ("tools: update hmm-test to support device coherent
        type", 6.0); older ones (5.10) name ``hmm.migrate`` and run every test on device-private memory."""
        return any(name.count(".") >= 2 for name in self.tests)

    @property
    def device_private(self) -> dict[str, int]:
        """pass/fail/skip counts of the ``hmm_device_private`` / ``hmm2_device_private`` tests, or of
        every test where the harness has no variants (all of them are device-private then)."""
        if self.tests and not self.variants:
            return {st: self.count(st) for st in ("pass", "fail", "skip")}
        return {st: self.count(st, "hmm_device_private") + self.count(st, "hmm2_device_private")
                for st in ("pass", "fail", "skip")}

    @property
    def ok(self) -> bool:
        """The harness said PASSED, every planned test reported, none failed."""
        return (self.summary == "PASSED" and self.count("fail") == 0
                and (self.planned is None or len(self.tests) == self.planned))


def parse_hmm_tests(text: str) -> HmmTestsResult:
    """Parse hmm-tests' stdout (other interleaved lines are ignored)."""
    res = HmmTestsResult()
    last_named: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if m := _PLAN.match(line):
            res.planned = int(m.group(1))
        elif m := _VERDICT.match(line):
            last_named = m.group(2)
        elif m := _RESULT.match(line):
            ok, _num, directive, rest = m.groups()
            name = rest.strip()
            if directive == "SKIP" or (directive is None and not name.startswith(("hmm.", "hmm2."))):
                # A skip line carries the reason, not the name: use the preceding verdict line.
                name = last_named or name
            status = "skip" if directive == "SKIP" else ("pass" if ok == "ok" and directive != "error" else "fail")
            if directive == "XFAIL":
                status = "pass"
            res.tests[name] = status
            last_named = None
        elif m := _TOTALS.match(line):
            keys = ("pass", "fail", "xfail", "xpass", "skip", "error")
            res.totals = dict(zip(keys, map(int, m.groups())))
        elif m := _SUMMARY.match(line):
            res.summary = m.group(1)
    return res
