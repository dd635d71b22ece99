"""The bug-variant edits (lab/bugs.py): anchors must match exactly once or fail loudly; no build, no QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargetrace.lab.bugs import VARIANTS, BugVariant, Edit, apply_edits, variant
from chargetrace.lab.config import DEFAULT_CACHE_DIR, LabConfig
from chargetrace.traces.errors import ChargetraceError


def _tree(tmp_path: Path, text: str) -> Path:
    clean = tmp_path / "clean"
    (clean / "mm").mkdir(parents=True)
    (clean / "mm" / "f.c").write_text(text)
    return clean


_V = BugVariant(name="t", series="6.1", what="w", recreates="r", rule="R6",
                edits=(Edit("mm/f.c", "\tuncharge(p);\n", "\tif (odd(p))\n\t\tuncharge(p);\n"),))


def test_edit_is_written_to_the_out_tree_and_leaves_the_clean_file_alone(tmp_path: Path) -> None:
    clean = _tree(tmp_path, "void f(p)\n{\n\tuncharge(p);\n}\n")
    [out] = apply_edits(clean, tmp_path / "upper", _V)
    assert out == tmp_path / "upper" / "mm" / "f.c"
    assert out.read_text() == "void f(p)\n{\n\tif (odd(p))\n\t\tuncharge(p);\n}\n"
    assert (clean / "mm" / "f.c").read_text() == "void f(p)\n{\n\tuncharge(p);\n}\n"


@pytest.mark.parametrize("text,why", [("void f(p)\n{\n\tcharge(p);\n}\n", "missing from"),
                                      ("\tuncharge(p);\n\tuncharge(p);\n", "ambiguous in")])
def test_missing_or_ambiguous_anchor_fails_loudly(tmp_path: Path, text: str, why: str) -> None:
    clean = _tree(tmp_path, text)
    with pytest.raises(ChargetraceError, match=f"bug t: anchor {why} mm/f.c"):
        apply_edits(clean, tmp_path / "upper", _V)
    assert not (tmp_path / "upper" / "mm" / "f.c").exists()


def test_unknown_variant_or_wrong_series_is_refused_before_any_build() -> None:
    with pytest.raises(ChargetraceError, match="unknown bug variant"):
        LabConfig(kernel="6.1", bug="no-such-bug")
    wrong = next(v for v in VARIANTS.values() if v.series == "6.1")
    with pytest.raises(ChargetraceError, match="written for kernel 6.1"):
        variant(wrong.name, "6.12")


def test_variant_key_changes_with_the_edit() -> None:
    other = BugVariant(**{**_V.__dict__, "edits": (Edit("mm/f.c", "\tuncharge(p);\n", "\t;\n"),)})
    assert _V.key() != other.key() and len(_V.key()) == 12


def test_bug_run_has_its_own_run_dir_and_trace_name() -> None:
    name = next(iter(VARIANTS))
    cfg = LabConfig(kernel=VARIANTS[name].series, bug=name, cache_dir=Path("/c"))
    assert cfg.run_dir == Path("/c/runs") / f"{cfg.kernel}-{name}"
    assert cfg.trace_name == f"hmm-tests-{cfg.kernel}-{name}.parquet"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_anchor_matches_the_cached_debian_source(name: str, tmp_path: Path) -> None:
    v = VARIANTS[name]
    trees = sorted((DEFAULT_CACHE_DIR / "kernel").glob(f"{v.series}.*-*/linux-source-{v.series}"))
    if not trees:
        pytest.skip(f"no cached linux-source-{v.series} tree under {DEFAULT_CACHE_DIR}/kernel "
                    f"(run 'chargetrace lab build --kernel {v.series}')")
    written = apply_edits(trees[0], tmp_path, v)
    assert len(written) == len(v.edits)
    for e, out in zip(v.edits, written):
        assert e.replacement in out.read_text()


# --- workloads, limits, OOM reports ---------------------------------------------------------------

_OOM_LOG = """[   90.1] limit_migrate invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=1000
[   90.1] CPU: 1 PID: 301 Comm: limit_migrate Not tainted 6.1.192 #1
[   90.1] Call Trace:
[   90.1]  <TASK>
[   90.1]  dump_stack_lvl+0x44/0x5c
[   90.1] memory: usage 65536kB, limit 65536kB, failcnt 12
[   90.1] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,task=limit_migrate
[   90.1] Memory cgroup out of memory: Killed process 301 (limit_migrate) total-vm:70000kB
[   95.0] WARNING: CPU: 0 PID: 12 at mm/page_counter.c:60 page_counter_cancel+0x5e/0x70
[   95.0] Call Trace:
"""


def test_dmesg_tells_oom_reports_from_warn_and_bug() -> None:
    from chargetrace.lab.run import dmesg_oom_reports, dmesg_problems

    assert dmesg_oom_reports(_OOM_LOG) == 1
    assert dmesg_problems(_OOM_LOG) == [
        "[   95.0] WARNING: CPU: 0 PID: 12 at mm/page_counter.c:60 page_counter_cancel+0x5e/0x70",
        "[   95.0] Call Trace:",
    ]


def test_workload_config(tmp_path: Path) -> None:
    f = tmp_path / "w"
    f.write_text("x")
    cfg = LabConfig(kernel="6.1", workload="./w 1", workload_files=(f,), memory_max=1 << 24, cache_dir=tmp_path)
    assert cfg.trace_name == "workload-6.1.parquet" and cfg.command_name == "workload"
    assert cfg.run_dir == tmp_path / "runs" / "6.1-workload"
    with pytest.raises(ChargetraceError, match="needs --workload"):
        LabConfig(kernel="6.1", workload_files=(f,))
    with pytest.raises(ChargetraceError, match="does not exist"):
        LabConfig(kernel="6.1", workload="x", workload_files=(tmp_path / "missing",))
    with pytest.raises(ChargetraceError, match="needs --record"):
        LabConfig(kernel="6.1", memory_max=1 << 24, record=False)


def test_lab_clean_removes_the_series_bug_builds_too(tmp_path: Path) -> None:
    from chargetrace.lab.run import clean_cache

    for d in ("kernel/6.1.192-3-abc", "kernel-bugs/6.1.192-3-abc/hole-charge-leak-1234",
              "kernel-bugs/6.12.117-1-def/lru-uncharged-5678"):
        (tmp_path / d).mkdir(parents=True)
    removed = clean_cache(LabConfig(kernel="6.1", cache_dir=tmp_path), runs=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        "kernel-bugs/6.1.192-3-abc", "kernel/6.1.192-3-abc"]
    assert (tmp_path / "kernel-bugs/6.12.117-1-def").is_dir()


# --- CONFIG_DEBUG_VM kernels, memory.events, the quick workload --------------------------------------

def test_debug_vm_is_a_separate_fragment_with_a_key_of_its_own(tmp_path: Path) -> None:
    from chargetrace.lab.cache import kernel_key, write_stamp
    from chargetrace.lab.kconfig import DEBUG_VM_FRAGMENT_NAME, fragment_bytes, parse_config
    from chargetrace.lab.kernel import build_kernel, kernel_dir
    from chargetrace.lab.packages import KernelSource

    # hmm-lab.config (every cached clean kernel's key) says nothing of DEBUG_VM; the option is its own file.
    assert "CONFIG_DEBUG_VM" not in parse_config(fragment_bytes().decode())
    assert parse_config(fragment_bytes(DEBUG_VM_FRAGMENT_NAME).decode())["CONFIG_DEBUG_VM"] == "y"
    src = KernelSource("6.1", "linux-source-6.1", "6.1.192-3", tmp_path / "none.tar.xz")
    clean_key = kernel_key(src.version, fragment_bytes())
    # Completed (stamped) builds are reused without make: which directory each flag picks is the point.
    clean_dir = kernel_dir(tmp_path, src, clean_key)
    clean_dir.mkdir(parents=True)
    write_stamp(clean_dir, {"release": "6.1.192"})
    clean = build_kernel(src, tmp_path, jobs=1, log=tmp_path / "log")
    assert clean.cached and clean.directory == clean_dir and clean.key == clean_key
    debug_key = kernel_key(src.version, fragment_bytes() + b"\n" + fragment_bytes(DEBUG_VM_FRAGMENT_NAME))
    debug_dir = tmp_path / "kernel" / f"{src.version}-debugvm-{debug_key}"
    debug_dir.mkdir(parents=True)
    write_stamp(debug_dir, {"release": "6.1.192"})
    debug = build_kernel(src, tmp_path, jobs=1, log=tmp_path / "log", debug_vm=True)
    assert debug.cached and debug.directory == debug_dir and debug.key == debug_key != clean_key


def test_debug_vm_run_has_its_own_run_dir(tmp_path: Path) -> None:
    cfg = LabConfig(kernel="6.1", bug="device-free-no-uncharge", debug_vm=True, cache_dir=tmp_path)
    assert cfg.run_dir == tmp_path / "runs" / "6.1-debugvm-device-free-no-uncharge"


def test_memory_events_file_is_read_by_name(tmp_path: Path) -> None:
    from chargetrace.lab.run import _read_events

    f = tmp_path / "memory.events"
    f.write_text("low 0\nhigh 0\nmax 61\noom 3\noom_kill 1\noom_group_kill 0\n")
    assert _read_events(f) == {"low": 0, "high": 0, "max": 61, "oom": 3, "oom_kill": 1, "oom_group_kill": 0}
    assert _read_events(tmp_path / "missing") == {}


@pytest.mark.parametrize("name", ["device_free.c", "limit_migrate.c"])
def test_lab_workloads_compile_cleanly(name: str, tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    src = Path(__file__).resolve().parent.parent / "lab" / "workloads" / name
    out = subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(tmp_path / "w"), str(src)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # Without test_hmm's device (this host has none) it says so and exits 2, never 0.
    assert subprocess.run([str(tmp_path / "w"), "4"], capture_output=True).returncode == 2
