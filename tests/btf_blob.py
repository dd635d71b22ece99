"""Build tiny BTF blobs by hand for the BTF reader tests (format:
Documentation/bpf/btf.rst). Only the kinds the tests need."""

from __future__ import annotations

import struct


class BlobBuilder:
    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def _add(self, name: str, kind: int, vlen: int, size_type: int, extra: bytes = b"", kflag: int = 0) -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.s(name), info, size_type) + extra
        self.count += 1
        return self.count

    def int_(self, name: str, size: int) -> int:
        return self._add(name, 1, 0, size, struct.pack("<I", size * 8))

    def ptr(self, target: int) -> int:
        return self._add("", 2, 0, target)

    def struct(self, name: str, size: int, members: list[tuple[str, int, int]], union: bool = False) -> int:
        extra = b"".join(struct.pack("<III", self.s(n), t, bits) for n, t, bits in members)
        return self._add(name, 5 if union else 4, len(members), size, extra)

    def enum(self, name: str, values: list[tuple[str, int]]) -> int:
        extra = b"".join(struct.pack("<Ii", self.s(n), v) for n, v in values)
        return self._add(name, 6, len(values), 4, extra)

    def typedef(self, name: str, target: int) -> int:
        return self._add(name, 8, 0, target)

    def func_proto(self, ret: int, params: list[tuple[str, int]]) -> int:
        extra = b"".join(struct.pack("<II", self.s(n), t) for n, t in params)
        return self._add("", 13, len(params), ret, extra)

    def func(self, name: str, proto: int) -> int:
        return self._add(name, 12, 1, proto)

    def build(self) -> bytes:
        hdr_len = 24
        header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, hdr_len, 0, len(self.types), len(self.types), len(self.strings))
        return header + bytes(self.types) + bytes(self.strings)
