"""Kernel headers for BCC, with or without a headers package; tracefs mount.

BCC compiles every program against kernel headers. Resolution order (first
hit wins, see :func:`resolve_headers`):

1. ``$BCC_KERNEL_SOURCE`` set by the user (a complete tree);
2. ``/lib/modules/$(uname -r)/build`` (a headers package or a build tree);
3. ``/sys/kernel/kheaders.tar.xz`` (CONFIG_IKHEADERS; BCC unpacks it itself);
4. a *stub tree* generated from ``/sys/kernel/btf/vmlinux`` into
   ``~/.cache/chargetrace/kstub-<release>-<btf digest>``.

The stub tree is enough for what the recorder's BPF code does: tracepoint
``args->`` fields (BCC builds those structs from tracefs ``format`` files),
raw-tracepoint ``ctx->args[i]`` scalars, helpers, and reads of kernel structs
by byte offsets computed from BTF. It holds no kernel struct definitions, so
BPF code must never dereference ``struct folio`` etc. by name against it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chargetrace.traces import ChargetraceError

from .bccload import cache_dir
from .btf import Btf

__all__ = [
    "HeaderSource",
    "resolve_headers",
    "write_stub_tree",
    "STUB_ENUMS",
    "TRACEFS",
    "ensure_tracefs",
]

TRACEFS = Path("/sys/kernel/tracing")
_DEBUGFS_TRACING = Path("/sys/kernel/debug/tracing")

#: Enums named by tracepoint format files or decoded by the recorder.
STUB_ENUMS = ("migrate_mode", "migrate_reason", "node_stat_item", "memcg_stat_item", "vm_event_item")
# Bump when the generated files change, so stale caches are not reused.
_STUB_LAYOUT = 1


@dataclass(frozen=True)
class HeaderSource:
    """Where BCC gets kernel headers from."""

    #: ``env``, ``build``, ``kheaders`` or ``btf-stub``.
    kind: str
    #: The tree (``None`` when BCC finds it itself: ``build``, ``kheaders``).
    path: Path | None
    #: Real kernel headers: BPF C may include ``<linux/mm_types.h>`` and use offsetof.
    real: bool

    def apply(self) -> None:
        """Point BCC at this tree (``BCC_KERNEL_SOURCE``) before ``BPF()``."""
        if self.kind in ("env", "btf-stub") and self.path is not None:
            os.environ["BCC_KERNEL_SOURCE"] = str(self.path)


def resolve_headers(
    btf: Btf | None,
    release: str | None = None,
    *,
    environ: dict[str, str] | None = None,
    modules_root: Path = Path("/lib/modules"),
    kheaders: Path = Path("/sys/kernel/kheaders.tar.xz"),
    stub_root: Path | None = None,
) -> HeaderSource:
    """Pick kernel headers for BCC in the documented order (module docstring)."""
    env = os.environ if environ is None else environ
    release = release or os.uname().release
    user = env.get("BCC_KERNEL_SOURCE")
    if user:
        if not (Path(user) / "include" / "linux" / "kconfig.h").is_file():
            raise ChargetraceError(
                f"BCC_KERNEL_SOURCE={user} is not a kernel header tree (no include/linux/kconfig.h)"
            )
        return HeaderSource("env", Path(user), real=True)
    build = modules_root / release / "build"
    if (build / "include" / "linux" / "kconfig.h").is_file():
        return HeaderSource("build", build, real=True)
    if kheaders.exists():
        return HeaderSource("kheaders", None, real=True)
    if btf is None:
        raise ChargetraceError(
            f"no kernel headers for {release} (no {build}, no {kheaders}) and no BTF "
            f"to generate stubs from; install linux-headers-{release} or set BCC_KERNEL_SOURCE"
        )
    root = stub_root or cache_dir()
    path = root / f"kstub-{release}-{btf.digest}-v{_STUB_LAYOUT}"
    if not (path / ".complete").exists():
        write_stub_tree(path, btf, release)
    return HeaderSource("btf-stub", path, real=False)


def _kernel_version_code(release: str) -> int:
    nums = []
    for piece in release.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        nums.append(int(digits or 0))
    while len(nums) < 3:
        nums.append(0)
    return (nums[0] << 16) + (nums[1] << 8) + min(nums[2], 255)


def _enum_c(btf: Btf, name: str) -> str:
    body = "".join(f"\t{k} = {v},\n" for k, v in btf.enum(name).items())
    return f"enum {name} {{\n{body}}};\n"


# x86-64 struct pt_regs (arch/x86/include/asm/ptrace.h): BCC's PT_REGS_PARMn
# macros read ctx->di, ->si, ... so the member order must be the kernel's.
_PT_REGS_X86_64 = """struct pt_regs {
\tunsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
\tunsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
"""

_TYPES_H = """#ifndef _CT_STUB_TYPES_H
#define _CT_STUB_TYPES_H
typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __s8 s8;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u16 __le16;
typedef __u32 __le32;
typedef __u64 __le64;
typedef __u16 __sum16;
typedef __u32 __wsum;
typedef __u64 __aligned_u64;
typedef _Bool bool;
enum { false = 0, true = 1 };
typedef int pid_t;
typedef unsigned int gfp_t;
typedef unsigned long size_t;
typedef long ssize_t;
typedef unsigned int uid_t;
typedef unsigned int gid_t;
typedef long long loff_t;
typedef unsigned long uintptr_t;
typedef unsigned short umode_t;
typedef unsigned int dev_t;
#define NULL ((void *)0)
#endif
"""


def write_stub_tree(path: Path, btf: Btf, release: str) -> Path:
    """Generate the minimal include tree described in the module docstring."""
    files: dict[str, str] = {
        # BCC force-includes kconfig.h; BPF_SYSCALL gates the bpf helpers.
        "include/linux/kconfig.h": "#define CONFIG_BPF_SYSCALL 1\n#define CONFIG_BPF_EVENTS 1\n",
        "include/linux/types.h": _TYPES_H,
        "include/uapi/linux/types.h": '#include <linux/types.h>\n',
        "include/linux/version.h": (
            f"#define LINUX_VERSION_CODE {_kernel_version_code(release)}\n"
            "#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))\n"
        ),
        "include/linux/log2.h": "",
        "include/linux/bpf_common.h": "",
        "include/linux/sched.h": "#define TASK_COMM_LEN 16\n",
        # BCC force-includes its own bpf.h; the system's uapi one would clash
        # (redefinition of enumerator BPF_REG_0), so these stay empty.
        "include/uapi/linux/bpf.h": "",
        "include/uapi/linux/bpf_common.h": "",
        "include/uapi/linux/if_packet.h": "",
        "include/uapi/linux/if_ether.h": "#define ETH_ALEN 6\n#define ETH_HLEN 14\n",
        "include/uapi/linux/ptrace.h": "#include <asm/ptrace.h>\n",
        "arch/x86/include/asm/ptrace.h": f"#ifndef _CT_STUB_PTRACE_H\n#define _CT_STUB_PTRACE_H\n{_PT_REGS_X86_64}#endif\n",
        "arch/x86/include/asm/page.h": "#define PAGE_SHIFT 12\n#define PAGE_SIZE (1UL << PAGE_SHIFT)\n",
        "arch/x86/include/generated/.keep": "",
        "arch/x86/include/uapi/.keep": "",
        "arch/x86/include/generated/uapi/.keep": "",
        "include/generated/uapi/.keep": "",
    }
    enums = []
    for name in STUB_ENUMS:
        if btf.has_enum(name):
            enums.append(_enum_c(btf, name))
    files["include/linux/chargetrace_enums.h"] = (
        "/* Generated by chargetrace from /sys/kernel/btf/vmlinux. */\n"
        "#ifndef _CT_STUB_ENUMS_H\n#define _CT_STUB_ENUMS_H\n" + "\n".join(enums) + "#endif\n"
    )
    # Real kernels declare migrate_mode/migrate_reason here (used by the
    # migrate:* format files); the stub keeps that include path working.
    files["include/linux/migrate_mode.h"] = "#include <linux/chargetrace_enums.h>\n"
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    for rel, text in files.items():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (tmp / ".complete").write_text(f"{release} {btf.digest}\n")
    try:
        os.rename(tmp, path)
    except OSError:
        # Another process won the race; its tree is identical.
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return path


def ensure_tracefs() -> Path:
    """Return the tracefs mount, mounting it at /sys/kernel/tracing when
    missing (root only). BCC reads tracepoint ids and formats from there."""
    if (TRACEFS / "events").is_dir():
        return TRACEFS
    if (_DEBUGFS_TRACING / "events").is_dir():
        return _DEBUGFS_TRACING
    if os.geteuid() != 0:
        raise ChargetraceError(f"tracefs is not mounted at {TRACEFS} and mounting it needs root")
    proc = subprocess.run(
        ["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, text=True
    )
    if proc.returncode != 0 or not (TRACEFS / "events").is_dir():
        msg = (proc.stderr or "").strip().splitlines()
        raise ChargetraceError(
            f"cannot mount tracefs at {TRACEFS}: {msg[-1] if msg else 'no events/ directory after mount'}"
        )
    return TRACEFS
