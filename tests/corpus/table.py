"""Print the corpus table: record and replay every case on this machine (root).

    python -m tests.corpus.table [CASE ...] [--keep DIR] [--markdown]

Columns: workload | events | verdict | rules checked | outstanding charges
explained | as expected. Every difference from the table in cases.py is listed
under it. Exit status 1 when a case differs and is not marked xfail, or is
marked xfail and no longer differs; 0 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .cases import CASES, case
from .harness import Corpus, Outcome, Unavailable, held_pages

__all__ = ["main", "print_table"]


def _row(o: Outcome) -> list[str]:
    rules = ", ".join(f"{r} {n:,}" for r, n in sorted(o.checked.items()))
    held = ", ".join(f"{h} {p:,} pages" for h, p in held_pages(o.report).items()) or "none"
    verdict = o.report.get("verdict", "?")
    if verdict != o.case.verdict:
        verdict += f" (expected {o.case.verdict})"
    if o.case.xfail:
        expected = "no, known (xfail)" if o.problems else "yes, but marked xfail: drop the mark"
    else:
        expected = "NO" if o.problems else "yes"
    return [o.case.name, f"{o.events:,}", verdict, rules or "none", held, expected]


def print_table(items: list[Outcome | str], names: list[str]) -> int:
    """Print the table of ``items`` (an outcome, or why the case did not run) and every
    difference under it; 1 when a case differs unexpectedly (see the module's doc), else 0."""
    head = ["workload", "events", "verdict", "rules checked", "outstanding charges explained", "as expected"]
    rows, notes, failed = [], [], 0
    for name, o in zip(names, items):
        if isinstance(o, str):
            rows.append([name, "-", "not run", "-", "-", f"skipped: {o}"])
            continue
        rows.append(_row(o))
        if bool(o.problems) != bool(o.case.xfail):
            failed += 1
        notes += [f"{name}: {p}" for p in o.problems]
        if o.case.xfail:
            notes.append(f"{name}: xfail: {o.case.xfail}")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    for n in notes:
        print(f"- {n}")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="case names (default: all)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the traces in this folder")
    args = ap.parse_args()
    unknown = set(args.cases) - {c.name for c in CASES}
    if unknown:
        print(f"unknown case(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="chargetrace-corpus-"))
    out_dir = args.keep or work
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        corpus = Corpus(work)
        items: list[Outcome | str] = []
        names = [c.name for c in CASES if not args.cases or c.name in args.cases]
        for name in names:
            try:
                o = corpus.run(case(name), out_dir / f"{name}.parquet")
            except Unavailable as exc:
                items.append(str(exc))
                continue
            items.append(o)
            print(f"{name}: {o.seconds:.1f} s", file=sys.stderr, flush=True)
        return print_table(items, names)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
