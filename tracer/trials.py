"""Probe trials: which catalogue variant attaches on this kernel, by trying.

:func:`choose_probes` decides per logical event by ACTUALLY compiling,
loading and attaching each candidate in tracer/bpf/recorder.c; the first that
attaches wins. ``support_kfunc()`` and kallsyms are not trusted to say yes
(on the machine this was written on, support_kfunc() is True but every
BPF_PROG_TYPE_TRACING load fails with EPERM); a missing symbol is trusted to
say no. The number of compiles is what a trial costs (minutes under QEMU
TCG), so the first candidates are tried in one combined program.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from .catalogue import BPF_DIR, CATALOGUE, MAIN_SOURCE, Choice, LogicalEvent, Variant
from .kernel import KernelInfo

__all__ = ["capture_stderr", "compile_cflags", "attach_kprobes", "trial_attach", "choose_probes"]

# Ring buffer pages used by trial compiles (they never deliver events).
_TRIAL_RB_PAGES = 16


@contextlib.contextmanager
def capture_stderr() -> Iterator[list[str]]:
    """Capture fd 2 (libbcc and libbpf print there, not to sys.stderr)."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


def variant_cflags(kernel: KernelInfo, variant: Variant) -> list[str]:
    return [f"-D{variant.define}={variant.pid}", *variant.cflags(kernel)]


def compile_cflags(kernel: KernelInfo, variants: list[Variant], extra: list[str]) -> list[str]:
    folio_reads = any(v.reads_structs for v in variants)
    flags = [f"-I{BPF_DIR}", *kernel.base_cflags(folio_reads), *extra]
    for v in variants:
        flags += variant_cflags(kernel, v)
    return flags


def _first_error(lines: list[str], exc: BaseException) -> str:
    for line in lines:
        if ": error:" in line:
            return line.split(": error:", 1)[1].strip()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_reason(variant: Variant, lines: list[str], exc: BaseException) -> str:
    blob = "\n".join(lines) + "\n" + str(exc)
    if "Failed to compile" in blob:
        return f"{variant.how}: compile failed: {_first_error(lines, exc)}"
    if variant.how == "fentry" and ("Operation not permitted" in blob or "super-user" in blob):
        return "fentry: BPF_PROG_TYPE_TRACING refused (EPERM)"
    if "Operation not permitted" in blob:
        return f"{variant.how}: load refused (EPERM)"
    for line in lines:
        if line.strip() and not line.startswith(("In file included", " ")):
            return f"{variant.how}: {line.strip()}"
    return f"{variant.how}: {_first_error(lines, exc)}"


def _attach_reason(kernel: KernelInfo, kind: str, sym: str, lines: list[str], exc: BaseException) -> str:
    if not kernel.has_kprobe_events:
        return "kprobe: CONFIG_KPROBES not set (no kprobe_events)"
    detail = next((ln.strip() for ln in lines if ln.strip()), str(exc).splitlines()[0])
    return f"{kind}: attach to {sym} failed ({detail})"


def attach_kprobes(bpf: Any, bcc: Any, variant: Variant) -> None:
    """Load (verifier) and attach a kprobe variant's functions."""
    for kind, sym, fn in variant.attach:
        bpf.load_func(fn.encode(), bcc.BPF.KPROBE)
    for kind, sym, fn in variant.attach:
        if kind == "kprobe":
            bpf.attach_kprobe(event=sym.encode(), fn_name=fn.encode())
        else:
            bpf.attach_kretprobe(event=sym.encode(), fn_name=fn.encode(), maxactive=64)


def _compile(bcc: Any, kernel: KernelInfo, variants: list[Variant]) -> tuple[Any, list[str], BaseException | None]:
    flags = compile_cflags(kernel, variants, [f"-DCT_RB_PAGES={_TRIAL_RB_PAGES}", "-DCT_SCOPE_ALL=1"])
    with capture_stderr() as lines:
        try:
            return bcc.BPF(src_file=str(MAIN_SOURCE).encode(), cflags=flags), lines, None
        except Exception as exc:  # bcc raises bare Exception for everything
            return None, lines, exc


def _try_kprobes(bpf: Any, bcc: Any, kernel: KernelInfo, variant: Variant) -> str | None:
    """Load (verifier) and attach one kprobe variant's functions in ``bpf``."""
    for _kind, _sym, fn in variant.attach:
        with capture_stderr() as lines:
            try:
                bpf.load_func(fn.encode(), bcc.BPF.KPROBE)
            except Exception as exc:
                return f"kprobe: {fn} rejected by the verifier ({_first_error(lines, exc)})"
    for kind, sym, fn in variant.attach:
        with capture_stderr() as lines:
            try:
                if kind == "kprobe":
                    bpf.attach_kprobe(event=sym.encode(), fn_name=fn.encode())
                else:
                    bpf.attach_kretprobe(event=sym.encode(), fn_name=fn.encode(), maxactive=64)
            except Exception as exc:
                return _attach_reason(kernel, kind, sym, lines, exc)
    return None


def trial_attach(bcc: Any, kernel: KernelInfo, variant: Variant, shared: Any = None) -> str | None:
    """Compile, load and attach ``variant`` alone; None on success, else why not.

    ``shared``: an already compiled program holding this kprobe variant's
    functions (kprobe programs load one by one, so one compile can serve
    every kprobe trial; tracepoint, raw-tp and fentry programs are loaded and
    attached all at once by BCC and need a compile each)."""
    pre = variant.precheck(kernel)
    if pre:
        return pre
    if shared is not None and variant.attach:
        return _try_kprobes(shared, bcc, kernel, variant)
    bpf, lines, err = _compile(bcc, kernel, [variant])
    if err is not None:
        return _load_reason(variant, lines, err)
    try:
        return _try_kprobes(bpf, bcc, kernel, variant) if variant.attach else None
    finally:
        with capture_stderr():
            bpf.cleanup()


def _batch_trial(bcc: Any, kernel: KernelInfo, candidates: list[Variant]) -> dict[int, str | None] | None:
    """Compile ``candidates`` (tracepoints included) as ONE program, load and attach them all.

    Returns variant pid -> None (works) or why its kprobe did not load/attach;
    None when the combined program does not compile or load. Under QEMU TCG one
    BCC compile against real headers takes minutes, so the number of compiles
    is what the trial costs (the lab measured > 10 min for per-variant trials).
    """
    if not candidates:
        return {}
    bpf, _lines, err = _compile(bcc, kernel, candidates)
    if err is not None:
        return None
    try:
        return {v.pid: (_try_kprobes(bpf, bcc, kernel, v) if v.attach else None) for v in candidates}
    finally:
        with capture_stderr():
            bpf.cleanup()


def _one_by_one(bcc: Any, kernel: KernelInfo, pending: list[tuple[LogicalEvent, Choice, int]],
                skip_how: frozenset[str]) -> None:
    # One compile for every remaining kprobe variant that passes its precheck
    # (one per C section); if that compile fails, each variant is tried alone.
    sections: dict[str, Variant] = {}
    for e, _choice, start in pending:
        for v in e.variants[start:]:
            if v.attach and v.define not in sections and v.precheck(kernel) is None:
                sections[v.define] = v
    shared = None
    if sections:
        shared, _lines, _err = _compile(bcc, kernel, list(sections.values()))
    try:
        for event, choice, start in pending:
            for variant in event.variants[start:]:
                if variant.how in skip_how:
                    choice.reasons.append(f"{variant.how}: skipped (--skip-how)")
                    continue
                reason = trial_attach(bcc, kernel, variant, shared)
                if reason is None:
                    choice.variant = variant
                    break
                choice.reasons.append(reason)
    finally:
        if shared is not None:
            with capture_stderr():
                shared.cleanup()


def choose_probes(
    bcc: Any, kernel: KernelInfo, only: set[str] | None = None, skip_how: frozenset[str] = frozenset()
) -> list[Choice]:
    """Trial-attach the catalogue in order; one :class:`Choice` per event.

    Fast path: each event's first variant that passes its precheck is tried in
    one combined program (:func:`_batch_trial`, one compile). Events whose
    candidate fails there, and every event when the combined program does not
    load, fall back to trying their (remaining) variants in catalogue order.

    ``skip_how``: attach kinds not to use (``tracepoint``, ...), to exercise
    the fallbacks on a kernel where the preferred probes work."""
    events = [e for e in CATALOGUE if only is None or e.name in only]
    first: dict[str, tuple[int, Variant]] = {}
    early: dict[str, list[str]] = {}
    for event in events:
        reasons: list[str] = []
        for i, variant in enumerate(event.variants):
            if variant.how in skip_how:
                reasons.append(f"{variant.how}: skipped (--skip-how)")
                continue
            pre = variant.precheck(kernel)
            if pre is None:
                first[event.name] = (i, variant)
                break
            reasons.append(pre)
        early[event.name] = reasons
    batch = _batch_trial(bcc, kernel, [v for _, v in first.values()])

    choices: list[Choice] = []
    pending: list[tuple[LogicalEvent, Choice, int]] = []
    for event in events:
        choice = Choice(event.name, event.kind, None)
        choices.append(choice)
        if batch is None:
            pending.append((event, choice, 0))
            continue
        choice.reasons.extend(early[event.name])
        if event.name not in first:
            continue
        i, cand = first[event.name]
        reason = batch[cand.pid]
        if reason is None:
            choice.variant = cand
        else:
            choice.reasons.append(reason)
            pending.append((event, choice, i + 1))
    if pending:
        _one_by_one(bcc, kernel, pending, skip_how)
    return choices
