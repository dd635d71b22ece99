"""What 7.2 changed for the recorder, decided from the kernel's own files (no version numbers):
memcg_data -> obj_cgroup (lru_reparent_memcg in kallsyms), -fms-extensions for BCC's clang
(CONFIG_CC_MS_EXTENSIONS in the headers' autoconf.h or /proc/config.gz), device-private THP
(do_huge_pmd_device_private), and the split probe tried at folio_split_memcg_refs first."""

from __future__ import annotations

import gzip
from pathlib import Path

from chargetrace.tracer.catalogue import CATALOGUE
from chargetrace.tracer.headers import HeaderSource
from chargetrace.tracer.kernel import KernelInfo


def _kallsyms(tmp_path: Path, *names: str) -> Path:
    p = tmp_path / "kallsyms"
    p.write_text("".join(f"ffffffff8100{i:04x} T {n}\n" for i, n in enumerate(("_stext", *names))))
    return p


def _tree(tmp_path: Path, autoconf: str) -> Path:
    tree = tmp_path / "kheaders"
    (tree / "include" / "generated").mkdir(parents=True)
    (tree / "include" / "generated" / "autoconf.h").write_text(autoconf)
    return tree


def _kernel(tmp_path: Path, syms: tuple[str, ...], headers: HeaderSource, config: Path | None = None) -> KernelInfo:
    return KernelInfo("7.2.12", None, headers, tmp_path, _kallsyms(tmp_path, *syms),
                      proc_config=config or tmp_path / "no-config.gz")


def test_72_kernel_reads_memcg_through_the_objcg_and_gets_ms_extensions(tmp_path: Path) -> None:
    tree = _tree(tmp_path, '#define CONFIG_MEMCG 1\n#define CONFIG_CC_MS_EXTENSIONS "-fms-extensions"\n')
    k = _kernel(tmp_path, ("lru_reparent_memcg", "do_huge_pmd_device_private"), HeaderSource("env", tree, True))
    assert k.memcg_data_objcg and k.device_thp and k.ms_extensions
    flags = k.base_cflags(folio_reads=True)
    assert {"-DCT_REAL_HEADERS=1", "-DCT_MEMCG_DATA_OBJCG=1", "-fms-extensions"} <= set(flags)


def test_612_kernel_gets_neither(tmp_path: Path) -> None:
    tree = _tree(tmp_path, "#define CONFIG_MEMCG 1\n")
    k = _kernel(tmp_path, ("free_zone_device_folio",), HeaderSource("env", tree, True))
    assert not (k.memcg_data_objcg or k.device_thp or k.ms_extensions)
    assert k.base_cflags(folio_reads=True) == ["-DCT_REAL_HEADERS=1"]


def test_ms_extensions_from_proc_config_when_bcc_unpacks_kheaders_itself(tmp_path: Path) -> None:
    config = tmp_path / "config.gz"
    with gzip.open(config, "wt") as fh:
        fh.write('CONFIG_MEMCG=y\nCONFIG_CC_MS_EXTENSIONS="-fms-extensions"\n')
    k = _kernel(tmp_path, (), HeaderSource("kheaders", None, True), config)
    assert k.ms_extensions and "-fms-extensions" in k.base_cflags()


def test_stub_headers_never_get_ms_extensions(tmp_path: Path) -> None:
    tree = _tree(tmp_path, '#define CONFIG_CC_MS_EXTENSIONS "-fms-extensions"\n')
    k = _kernel(tmp_path, (), HeaderSource("btf-stub", tree, False))
    assert "-fms-extensions" not in k.base_cflags()


def test_split_is_tried_at_folio_split_memcg_refs_first() -> None:
    (split,) = [e for e in CATALOGUE if e.name == "split"]
    assert [v.probe for v in split.variants] == ["kprobe:folio_split_memcg_refs", "kprobe:split_page_memcg"]
