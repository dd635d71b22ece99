"""Bug variants of the lab kernels: historical memcg/HMM accounting bugs put back.

Each :class:`BugVariant` is a small source edit we write ourselves (anchor text
+ replacement) that re-creates the class of one real kernel bug, with the
commit that fixed it and the replay rule expected to report it. Edits are
applied at build time to Debian's source (no kernel code is committed here) and
**fail loudly** when an anchor is missing from (or ambiguous in) that kernel
version, so a variant can never silently build the clean kernel.

Incremental build (:func:`build_variant`): Kbuild records absolute paths in its
``.cmd`` files, so a copy of the clean tree at another path rebuilds everything
(~20-45 min here). Instead an overlayfs is mounted *on top of the clean cache
directory, at the same path*, inside a private mount namespace (``unshare -m``):
the build sees the clean tree plus the variant's edited files, only the objects
depending on them are rebuilt, and every write lands in the variant's upper
directory (cached per clean key and variant). The clean tree is never modified;
other processes never see the overlay.

Limits: x86_64 hosts with overlayfs and ``unshare`` (util-linux), as root. A
variant whose edit touches a header rebuilds everything that includes it.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from chargetrace.traces.errors import ChargetraceError

from .cache import is_done, locked, read_stamp, write_stamp
from .kernel import KernelBuild
from .proc import run

__all__ = ["VARIANTS", "BugVariant", "Edit", "apply_edits", "build_variant", "variant"]


@dataclass(frozen=True)
class Edit:
    """Replace the one occurrence of ``anchor`` in ``path`` (relative to the source tree)."""

    path: str
    anchor: str
    replacement: str


@dataclass(frozen=True)
class BugVariant:
    """One re-created kernel bug.

    :param name: the ``--bug`` name.
    :param series: kernel series the edit is written for (``6.1``, ``6.12``).
    :param what: what the edited kernel does wrong, in one sentence.
    :param recreates: the commit(s) whose bug class this re-creates (id + subject).
    :param rule: the replay rule expected to report it.
    :param edits: the source edits.
    """

    name: str
    series: str
    what: str
    recreates: str
    rule: str
    edits: tuple[Edit, ...]

    def key(self) -> str:
        """12 hex digits over the edits (a changed edit is a different build)."""
        h = hashlib.sha256(f"{self.name}\n{self.series}\n".encode())
        for e in self.edits:
            h.update(f"{e.path}\0{e.anchor}\0{e.replacement}\0".encode())
        return h.hexdigest()[:12]

    def provenance(self) -> dict[str, str]:
        return {"name": self.name, "what": self.what, "recreates": self.recreates, "expected_rule": self.rule,
                "edited_files": ", ".join(sorted({e.path for e in self.edits}))}


# --- the variants ------------------------------------------------------------------------------------------
# Anchors are copied from Debian's linux-source-6.1 (6.1.192) / linux-source-6.12; each replacement keeps
# the anchor's code and adds the bug, so the diff reads as the bug.

_V61_DEVICE_FREE_NO_UNCHARGE = BugVariant(
    name="device-free-no-uncharge",
    series="6.1",
    what="free_zone_device_page() skips mem_cgroup_uncharge() for device-private pages at odd pfns, "
         "so those frees leave their charge behind (and the stale memcg_data on the free page)",
    recreates='c5d6c45e90c4 "mm/swap: Fix release_pages() when releasing devmap pages" and '
              '"mm: handle zone device pages in release_pages()" (a device-page free path without the uncharge)',
    rule="R6",
    edits=(Edit(
        path="mm/memremap.c",
        anchor="\t\treturn;\n\n\tmem_cgroup_uncharge(page_folio(page));\n",
        replacement="\t\treturn;\n\n\t/* chargetrace lab bug device-free-no-uncharge */\n"
                    "\tif (!(is_device_private_page(page) && (page_to_pfn(page) & 1)))\n"
                    "\t\tmem_cgroup_uncharge(page_folio(page));\n",
    ),),
)

_V61_HOLE_CHARGE_LEAK = BugVariant(
    name="hole-charge-leak",
    series="6.1",
    what="migrate_vma_insert_page() aborts every device-private hole insertion after its charge (as when the "
         "PTE was populated concurrently, a race hmm-tests cannot provoke) and drops the folio's memcg "
         "without uncharging it, so finalize frees the page with its charge never released",
    recreates='the 4.14 -> 5.8 change of migrate_vma_insert_page() abort handling (4.14 cancelled the charge on '
              'abort; since 5.8 finalize\'s free releases it): an abort path that loses the charge',
    rule="R9",
    edits=(Edit(
        path="mm/migrate_device.c",
        anchor="\tif (mem_cgroup_charge(page_folio(page), vma->vm_mm, GFP_KERNEL))\n\t\tgoto abort;\n",
        replacement="\tif (mem_cgroup_charge(page_folio(page), vma->vm_mm, GFP_KERNEL))\n\t\tgoto abort;\n"
                    "\t/* chargetrace lab bug hole-charge-leak */\n"
                    "\tif (is_device_private_page(page)) {\n"
                    "\t\tpage_folio(page)->memcg_data = 0;\n"
                    "\t\tgoto abort;\n"
                    "\t}\n",
    ),),
)

_V61_DEVICE_MIGRATE_UNCHARGED = BugVariant(
    name="device-migrate-uncharged",
    series="6.1",
    what="mem_cgroup_migrate() leaves a ZONE_DEVICE destination uncharged, so anonymous memory migrated to the "
         "device leaves its memcg's accounting (and comes back to RAM uncharged)",
    recreates='the accounting gap that c733a82874a7 "mm/memcontrol: support MEMORY_DEVICE_PRIVATE" (4.14) closed: '
              'device-private pages not charged to the memcg of the memory they replace',
    rule="R4",
    edits=(Edit(
        path="mm/memcontrol.c",
        anchor="\tif (mem_cgroup_disabled())\n\t\treturn;\n\n\t/* Page cache replacement: new folio already charged? */\n",
        replacement="\tif (mem_cgroup_disabled())\n\t\treturn;\n\n"
                    "\t/* chargetrace lab bug device-migrate-uncharged */\n"
                    "\tif (folio_is_zone_device(new))\n\t\treturn;\n\n"
                    "\t/* Page cache replacement: new folio already charged? */\n",
    ),),
)

# 6.12 (transfer era, 85ce2c517ade): Debian's 6.12 carries the stable backport of 41cddf83d8b0.
_V612_LRU_UNCHARGED = BugVariant(
    name="lru-uncharged",
    series="6.12",
    what="migrate_device_finalize() puts the source folio back on the LRU with folio_putback_lru() after "
         "mem_cgroup_migrate() moved its charge away (memcg_data 0), as before 41cddf83d8b0",
    recreates='41cddf83d8b0 "mm/migrate_device: don\'t add folio to be freed to LRU in migrate_device_finalize()" '
              '(the code it replaced, from 8763cb45ab96 "mm/migrate: new memory migration helper for use with '
              'device memory")',
    rule="R12",
    edits=(Edit(
        path="mm/migrate_device.c",
        anchor="\t\tif (!folio_is_zone_device(dst))\n\t\t\tfolio_add_lru(dst);\n"
               "\t\tremove_migration_ptes(src, dst, 0);\n\t\tfolio_unlock(src);\n\t\tfolio_put(src);\n\n"
               "\t\tif (dst != src) {\n\t\t\tfolio_unlock(dst);\n\t\t\tfolio_put(dst);\n\t\t}\n",
        replacement="\t\t/* chargetrace lab bug lru-uncharged */\n"
                    "\t\tremove_migration_ptes(src, dst, 0);\n\t\tfolio_unlock(src);\n"
                    "\t\tif (folio_is_zone_device(src))\n\t\t\tfolio_put(src);\n"
                    "\t\telse\n\t\t\tfolio_putback_lru(src);\n\n"
                    "\t\tif (dst != src) {\n\t\t\tfolio_unlock(dst);\n"
                    "\t\t\tif (folio_is_zone_device(dst))\n\t\t\t\tfolio_put(dst);\n"
                    "\t\t\telse\n\t\t\t\tfolio_putback_lru(dst);\n\t\t}\n",
    ),),
)

_V612_TRANSFER_KEEPS_OLD = BugVariant(
    name="transfer-keeps-old",
    series="6.12",
    what="mem_cgroup_migrate() commits the new folio to the memcg but leaves the old folio's memcg_data set, "
         "so the old folio's free uncharges the same pages again (page_counter underflow class)",
    recreates='85ce2c517ade "memcontrol: only transfer the memcg data for migration" (6.7) with its '
              '"old->memcg_data = 0" left out',
    # The old folio's free uncharges pages whose charge the transfer moved away: on a >= 6.7
    # profile that is R4 (the old folio still charged after the transfer, replay/rules/blame.py);
    # the underflow it causes is R3.usage (memory.current 0, the model far below it).
    rule="R4",
    edits=(Edit(
        path="mm/memcontrol.c",
        anchor="\tWARN_ON_ONCE(folio_unqueue_deferred_split(old));\n\told->memcg_data = 0;\n",
        replacement="\tWARN_ON_ONCE(folio_unqueue_deferred_split(old));\n"
                    "\t/* chargetrace lab bug transfer-keeps-old: old->memcg_data stays set */\n",
    ),),
)

VARIANTS: dict[str, BugVariant] = {v.name: v for v in (
    _V61_DEVICE_FREE_NO_UNCHARGE, _V61_HOLE_CHARGE_LEAK, _V61_DEVICE_MIGRATE_UNCHARGED,
    _V612_LRU_UNCHARGED, _V612_TRANSFER_KEEPS_OLD)}


def variant(name: str, series: str) -> BugVariant:
    """The variant ``name`` for kernel ``series``; ChargetraceError if unknown or written for another series."""
    v = VARIANTS.get(name)
    if v is None:
        raise ChargetraceError(f"lab: unknown bug variant {name!r} (known: {', '.join(sorted(VARIANTS))})")
    if v.series != series:
        raise ChargetraceError(f"lab: bug variant {name!r} is written for kernel {v.series}, not {series}")
    return v


def apply_edits(clean_tree: Path, out_tree: Path, v: BugVariant) -> list[Path]:
    """Read each edited file from ``clean_tree``, apply the edit, write it under ``out_tree``.

    ``out_tree`` may equal ``clean_tree`` only for a scratch copy: the cached clean tree must never be
    written (the overlay's upper directory is the usual ``out_tree``). Raises ChargetraceError, naming
    the file and variant, when an anchor is missing or occurs more than once.
    """
    written: list[Path] = []
    for e in v.edits:
        src = clean_tree / e.path
        try:
            text = src.read_text()
        except OSError as exc:
            raise ChargetraceError(f"lab: bug {v.name}: cannot read {src}: {exc.strerror}") from None
        n = text.count(e.anchor)
        if n != 1:
            first = e.anchor.strip().splitlines()[0] if e.anchor.strip() else e.anchor
            raise ChargetraceError(f"lab: bug {v.name}: anchor {'missing from' if n == 0 else 'ambiguous in'} "
                                   f"{e.path} ({n} matches of {first!r}); the edit does not fit this kernel")
        dst = out_tree / e.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text.replace(e.anchor, e.replacement))
        shutil.copymode(src, dst)
        written.append(dst)
    return written


def _build_script(clean: Path, topdir: str, upper: Path, work: Path, out: Path, jobs: int) -> str:
    """The shell run inside the private mount namespace: overlay, make, copy the artifacts out."""
    q = shlex.quote
    tree, kbuild = clean / topdir, clean / "kbuild"
    return "\n".join([
        "set -eu",
        # A private namespace may still propagate mounts back when / is shared (systemd's default).
        "mount --make-rprivate /",
        f"mount -t overlay overlay -o lowerdir={q(str(clean))},upperdir={q(str(upper))},workdir={q(str(work))} "
        f"{q(str(clean))}",
        f"make -C {q(str(tree))} O={q(str(kbuild))} -j{jobs} bzImage modules",
        f"rm -rf {q(str(clean / 'modroot'))}",
        f"make -C {q(str(tree))} O={q(str(kbuild))} INSTALL_MOD_PATH={q(str(clean / 'modroot'))} modules_install",
        f"make -C {q(str(kbuild))} M={q(str(clean / 'test_hmm_oot'))} modules",
        f"rm -rf {q(str(out))} && mkdir -p {q(str(out / 'kbuild/arch/x86/boot'))} {q(str(out / 'test_hmm_oot'))}",
        f"cp {q(str(kbuild / 'arch/x86/boot/bzImage'))} {q(str(out / 'kbuild/arch/x86/boot/'))}",
        f"cp {q(str(kbuild / '.config'))} {q(str(out / 'kbuild/'))}",
        f"cp {q(str(clean / 'test_hmm_oot/test_hmm.ko'))} {q(str(out / 'test_hmm_oot/'))}",
        f"cp {q(str(clean / 'hmm-tests'))} {q(str(out))}/",
        f"cp -a {q(str(clean / 'modroot'))} {q(str(out))}/",
    ])


def build_variant(clean: KernelBuild, v: BugVariant, cache_dir: Path, *, jobs: int, log: Path) -> KernelBuild:
    """Build (or reuse) variant ``v`` incrementally on top of the cached clean build ``clean``.

    Returns a KernelBuild whose directory holds the variant's bzImage, modules, test_hmm.ko and
    hmm-tests (the layout of a clean build's directory). ``key`` is ``<clean key>+<variant key>``.
    """
    if shutil.which("unshare") is None:
        raise ChargetraceError("lab: building a bug variant needs unshare (util-linux)")
    lower = clean.directory.resolve()
    d = cache_dir / "kernel-bugs" / lower.name / f"{v.name}-{v.key()}"
    key = f"{clean.key}+{v.key()}"
    with locked(d):
        if is_done(d):
            stamp = read_stamp(d)
            return KernelBuild(d / "out", clean.source, key, stamp["release"], cached=True)
        t0 = time.monotonic()
        upper, work = d / "upper", d / "work"
        # Start from the clean tree each time: a half-done upper dir is still valid input for make, but
        # an edit changed since would leave stale files behind.
        shutil.rmtree(upper, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        upper.mkdir(parents=True)
        work.mkdir(parents=True)
        # Written into the upper dir while no overlay is mounted (allowed by overlayfs); the clean
        # files are only read.
        apply_edits(lower / clean.source.topdir, upper / clean.source.topdir, v)
        script = _build_script(lower, clean.source.topdir, upper, work, d / "out", jobs)
        (d / "build.sh").write_text(script + "\n")
        secs = run(["unshare", "-m", "sh", d / "build.sh"], log=log, what=f"bug variant {v.name} build")
        release = clean.release
        bz = d / "out" / "kbuild" / "arch" / "x86" / "boot" / "bzImage"
        if not bz.is_file():
            raise ChargetraceError(f"lab: bug variant {v.name} build finished but {bz} is missing; see {log}")
        # The upper dir (~400 MB of rebuilt objects) is only an input to this build: a rebuild starts
        # from the clean tree again (above), so keep just the artifacts.
        shutil.rmtree(upper, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        total = time.monotonic() - t0
        write_stamp(d, {"release": release, "variant": v.provenance(), "clean": str(lower), "key": key,
                        "timings": {"build": round(secs, 1), "total": round(total, 1)}})
        return KernelBuild(d / "out", clean.source, key, release, cached=False,
                           timings={"variant_build": total})
