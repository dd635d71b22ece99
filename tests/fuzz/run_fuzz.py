"""Run the seeded fuzz corpus through the CLI and tabulate the outcomes.

Every case must end in exit 2 with exactly one stderr line (no "internal
error"), or an honest verdict: violations (1), inconclusive (3), unchecked (4);
balanced (0) only when the case's rows and metadata are the base's after all
(a flipped bit in a statistic), or for text that only looks like markup.
``info``/``anonymize``/``mutate`` cases may succeed (0) or refuse (2).

    python tests/fuzz/run_fuzz.py [--cases N] [--seed S] [--out table.md]

The CI size runs from tests/fuzz/test_fuzz.py (``CHARGETRACE_FUZZ_CASES``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from click.testing import CliRunner  # noqa: E402

from chargetrace.cli import main  # noqa: E402
from fuzz_corpus import CATEGORIES, Case, make_bases, make_case, same_as_base  # noqa: E402

__all__ = ["run_corpus", "format_table"]

_VERDICTS = {0: "balanced", 1: "violations", 2: "refused", 3: "inconclusive", 4: "unchecked"}


def _judge(case: Case, code: int, stderr: str, bases) -> str | None:
    """None when the outcome is allowed, else why not."""
    lines = stderr.splitlines()
    if "internal error" in stderr or "Traceback" in stderr:
        return f"internal error: {stderr.strip()[:200]}"
    if code == 2:
        if len(lines) != 1 or not lines[0].startswith("chargetrace: error: "):
            return f"exit 2 with {len(lines)} stderr line(s): {stderr[:200]!r}"
        return None
    if case.command != "replay":
        return None if code == 0 else f"{case.command} exited {code}"
    if code in (1, 3, 4):
        return None
    if code == 0:
        if case.may_be_intact or same_as_base(case.path, bases):
            return None
        return "balanced on a damaged trace"
    return f"unexpected exit {code}"


def run_corpus(cases: int, seed: int = 1, work: Path | None = None, only: str | None = None):
    """Run ``cases`` cases (those of category ``only``, if given); returns (counts[category][outcome], failures)."""
    own = None
    if work is None:
        own = tempfile.TemporaryDirectory(prefix="chargetrace-fuzz-")
        work = Path(own.name)
    bases = make_bases(work)
    runner = CliRunner()
    counts: dict[str, Counter] = defaultdict(Counter)
    failures: list[str] = []
    out = work / "out.parquet"
    try:
        names = list(CATEGORIES)
        for i in range(cases):
            if only is not None and names[i % len(names)] != only:
                continue
            case = make_case(seed, i, bases, work)
            args = {"replay": ["replay", str(case.path)], "info": ["info", str(case.path)],
                    "anonymize": ["anonymize", str(case.path), str(out), "--force"],
                    "mutate": ["mutate", str(case.path), str(out), "--force", "--double-charge", "1"]}[case.command]
            result = runner.invoke(main, args)
            code = result.exit_code
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                why = f"exception escaped: {type(result.exception).__name__}: {result.exception}"
            else:
                why = _judge(case, code, result.stderr, bases)
            label = _VERDICTS.get(code, f"exit {code}") if case.command == "replay" else f"{case.command} {code}"
            counts[case.category][label] += 1
            if why:
                failures.append(f"case {i} [{case.category}] {case.detail} ({case.command}): {why}")
    finally:
        if own is not None:
            own.cleanup()
    return counts, failures


def format_table(counts: dict[str, Counter]) -> str:
    rows = ["| category | cases | outcomes |", "|---|---:|---|"]
    total = Counter()
    for category in CATEGORIES:
        c = counts.get(category, Counter())
        total.update(c)
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))
        rows.append(f"| {category} | {sum(c.values())} | {outcomes} |")
    rows.append(f"| **all** | {sum(total.values())} | "
                f"{', '.join(f'{k} {v}' for k, v in sorted(total.items(), key=lambda kv: -kv[1]))} |")
    return "\n".join(rows)


def main_(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="Also write the table here.")
    parser.add_argument("--only", choices=list(CATEGORIES), default=None, help="Run this category's cases only.")
    args = parser.parse_args(argv)
    start = time.monotonic()
    counts, failures = run_corpus(args.cases, args.seed, only=args.only)
    table = format_table(counts)
    print(table)
    print(f"\n{args.cases} cases, seed {args.seed}, {time.monotonic() - start:.0f} s, {len(failures)} failure(s)")
    for f in failures[:50]:
        print("FAIL", f)
    if args.out:
        args.out.write_text(table + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
