"""A small pure-Python reader for kernel BTF (``/sys/kernel/btf/vmlinux``).

Scope: what the recorder needs to build BPF programs without kernel headers:

* enum definitions (``migrate_reason``, ``node_stat_item``, ...) to emit stub
  headers and to name counter items in Python;
* byte offsets of struct members (``folio.memcg_data``, ``mem_cgroup.css``,
  ...), following anonymous struct/union members, so probes can read kernel
  structs by offset on the running kernel's own layout;
* whether a function exists (``BTF_KIND_FUNC``), for era feature detection;
* the parameter count of a raw tracepoint (``btf_trace_<name>`` typedefs).

Limits: only the base vmlinux BTF (no split/module BTF), little-endian only,
bitfield members report the byte that holds their first bit. The format is
documented in the kernel's Documentation/bpf/btf.rst.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from chargetrace.traces import ChargetraceError

__all__ = ["Btf", "BtfError", "VMLINUX_BTF", "load_vmlinux_btf"]

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

_MAGIC = 0xEB9F

# BTF_KIND_* numbers (include/uapi/linux/btf.h).
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
_VOLATILE, _CONST, _RESTRICT, _FUNC, _FUNC_PROTO, _VAR, _DATASEC = 9, 10, 11, 12, 13, 14, 15
_FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = 16, 17, 18, 19

# Bytes that follow the 12-byte common header: fixed part, per-vlen-entry part.
_EXTRA: dict[int, tuple[int, int]] = {
    _INT: (4, 0),
    _PTR: (0, 0),
    _ARRAY: (12, 0),
    _STRUCT: (0, 12),
    _UNION: (0, 12),
    _ENUM: (0, 8),
    _FWD: (0, 0),
    _TYPEDEF: (0, 0),
    _VOLATILE: (0, 0),
    _CONST: (0, 0),
    _RESTRICT: (0, 0),
    _FUNC: (0, 0),
    _FUNC_PROTO: (0, 8),
    _VAR: (4, 0),
    _DATASEC: (0, 12),
    _FLOAT: (0, 0),
    _DECL_TAG: (4, 0),
    _TYPE_TAG: (0, 0),
    _ENUM64: (0, 12),
}
_MODIFIERS = {_VOLATILE, _CONST, _RESTRICT, _TYPEDEF, _TYPE_TAG}


class BtfError(ChargetraceError):
    """The BTF blob is malformed or lacks something that was asked for."""


class Btf:
    """Parsed BTF type section (types are decoded lazily, names eagerly)."""

    def __init__(self, data: bytes, source: str = "BTF") -> None:
        self.source = source
        if len(data) < 24:
            raise BtfError(f"{source}: too short for a BTF header")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != _MAGIC:
            raise BtfError(f"{source}: bad BTF magic {magic:#x} (big-endian BTF is not supported)")
        if version != 1:
            raise BtfError(f"{source}: BTF version {version} is not supported")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        base = hdr_len
        self._data = data
        self._types = memoryview(data)[base + type_off : base + type_off + type_len]
        self._strs = data[base + str_off : base + str_off + str_len]
        if base + str_off + str_len > len(data) or base + type_off + type_len > len(data):
            raise BtfError(f"{source}: sections run past the end of the blob")
        # _offsets[i] = byte offset of type id i+1 in the type section.
        self._offsets: list[int] = []
        self._by_name: dict[tuple[int, str], list[int]] = {}
        self._index()
        self.digest = hashlib.sha256(data).hexdigest()[:16]

    # -- parsing -----------------------------------------------------------
    def _index(self) -> None:
        types, pos, end = self._types, 0, len(self._types)
        unpack = struct.unpack_from
        offsets, by_name, strs = self._offsets, self._by_name, self._strs
        while pos < end:
            if pos + 12 > end:
                raise BtfError(f"{self.source}: truncated type at byte {pos}")
            name_off, info, _ = unpack("<III", types, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            try:
                fixed, per = _EXTRA[kind]
            except KeyError:
                raise BtfError(f"{self.source}: unknown BTF kind {kind} at byte {pos}") from None
            offsets.append(pos)
            if name_off:
                stop = strs.find(b"\0", name_off)
                name = strs[name_off:stop].decode("ascii", "replace")
                by_name.setdefault((kind, name), []).append(len(offsets))
            pos += 12 + fixed + per * vlen

    def _str(self, off: int) -> str:
        stop = self._strs.find(b"\0", off)
        return self._strs[off:stop].decode("ascii", "replace")

    def _header(self, tid: int) -> tuple[int, int, int, int, int]:
        """(kind, vlen, kind_flag, name_off, size_or_type) of type ``tid``."""
        if not 1 <= tid <= len(self._offsets):
            raise BtfError(f"{self.source}: type id {tid} out of range")
        name_off, info, size_type = struct.unpack_from("<III", self._types, self._offsets[tid - 1])
        return (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, name_off, size_type

    def _find(self, kind: int, name: str) -> int | None:
        ids = self._by_name.get((kind, name))
        if not ids:
            return None
        # Prefer a complete definition (a struct with members / non-zero size).
        for tid in ids:
            if self._header(tid)[4]:
                return tid
        return ids[0]

    @property
    def num_types(self) -> int:
        return len(self._offsets)

    # -- public queries ----------------------------------------------------
    def has_func(self, name: str) -> bool:
        """True when ``name`` is a function in BTF (i.e. not inlined away)."""
        return (_FUNC, name) in self._by_name

    def enum(self, name: str) -> dict[str, int]:
        """Enumerators of ``enum name`` in declaration order."""
        tid = self._find(_ENUM, name)
        kind = _ENUM
        if tid is None:
            tid, kind = self._find(_ENUM64, name), _ENUM64
        if tid is None:
            raise BtfError(f"{self.source}: no enum {name}")
        _, vlen, kflag, _, _ = self._header(tid)
        pos = self._offsets[tid - 1] + 12
        out: dict[str, int] = {}
        for _ in range(vlen):
            if kind == _ENUM:
                name_off, val = struct.unpack_from("<I" + ("i" if kflag else "I"), self._types, pos)
                pos += 8
            else:
                name_off, lo, hi = struct.unpack_from("<III", self._types, pos)
                val = (hi << 32) | lo
                if kflag and val >= 1 << 63:
                    val -= 1 << 64
                pos += 12
            out[self._str(name_off)] = val
        return out

    def has_enum(self, name: str) -> bool:
        return (_ENUM, name) in self._by_name or (_ENUM64, name) in self._by_name

    def _resolve(self, tid: int) -> int:
        """Skip typedefs and qualifiers."""
        for _ in range(64):
            kind, _, _, _, size_type = self._header(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = size_type
        raise BtfError(f"{self.source}: typedef loop at type {tid}")

    def _members(self, tid: int) -> Iterator[tuple[str, int, int]]:
        """(name, member type id, bit offset) of a struct/union."""
        _, vlen, kflag, _, _ = self._header(tid)
        pos = self._offsets[tid - 1] + 12
        for _ in range(vlen):
            name_off, mtype, off = struct.unpack_from("<III", self._types, pos)
            pos += 12
            yield self._str(name_off), mtype, (off & 0xFFFFFF) if kflag else off

    def _member_path(self, tid: int, name: str) -> tuple[int, int] | None:
        """(bit offset, type id) of member ``name`` in struct/union ``tid``,
        searching anonymous members depth-first (C's own lookup rule)."""
        for mname, mtype, bits in self._members(tid):
            if mname == name:
                return bits, mtype
            if not mname:
                inner = self._resolve(mtype)
                if self._header(inner)[0] in (_STRUCT, _UNION):
                    found = self._member_path(inner, name)
                    if found is not None:
                        return bits + found[0], found[1]
        return None

    def struct_id(self, name: str) -> int:
        tid = self._find(_STRUCT, name) or self._find(_UNION, name)
        if tid is None:
            raise BtfError(f"{self.source}: no struct {name}")
        return tid

    def has_member(self, struct_name: str, path: str) -> bool:
        try:
            self.offsetof(struct_name, path)
        except BtfError:
            return False
        return True

    def offsetof(self, struct_name: str, path: str) -> int:
        """Byte offset of ``path`` (``"a.b.c"``, ``"arr[2]"`` not supported) in
        ``struct struct_name``, like C's ``offsetof``."""
        tid = self.struct_id(struct_name)
        total = 0
        for part in path.split("."):
            tid = self._resolve(tid)
            if self._header(tid)[0] not in (_STRUCT, _UNION):
                raise BtfError(f"{self.source}: {struct_name}.{path}: {part} is not in a struct")
            found = self._member_path(tid, part)
            if found is None:
                raise BtfError(f"{self.source}: struct {struct_name} has no member {path}")
            total += found[0]
            tid = found[1]
        return total // 8

    def sizeof(self, struct_name: str) -> int:
        return self._header(self.struct_id(struct_name))[4]

    def func_nargs(self, name: str) -> int | None:
        """Parameters of kernel function ``name`` (its FUNC_PROTO), None if absent."""
        tid = self._find(_FUNC, name)
        if tid is None:
            return None
        kind, vlen, _, _, _ = self._header(self._header(tid)[4])
        return vlen if kind == _FUNC_PROTO else None

    def raw_tp_nargs(self, tracepoint: str) -> int | None:
        """Arguments of raw tracepoint ``tracepoint`` (TP_PROTO), from the
        ``btf_trace_<name>`` typedef (a pointer to a proto whose first
        parameter is the hidden ``void *__data``); None if absent."""
        tid = self._find(_TYPEDEF, f"btf_trace_{tracepoint}")
        if tid is None:
            return None
        ptr = self._header(tid)[4]
        kind, _, _, _, proto = self._header(ptr)
        if kind != _PTR:
            return None
        kind, vlen, _, _, _ = self._header(proto)
        return vlen - 1 if kind == _FUNC_PROTO else None


def load_vmlinux_btf(path: str | os.PathLike[str] = VMLINUX_BTF) -> Btf | None:
    """The running kernel's BTF, or None when the kernel has none."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BtfError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return Btf(data, str(path))
