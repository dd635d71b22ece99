"""Arrow arrays as numpy without importing pandas.

pyarrow's ``Array.to_numpy`` and ``ChunkedArray.to_numpy`` import pandas on first
use (0.3-1 s, most of a small trace's replay) even for a zero-copy view; these
helpers view the data buffer directly. Scope: fixed-width primitive arrays
without nulls (every integer column of a trace, dictionary indices); anything
else goes through pyarrow's own conversion.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["numpy_of", "longest_string", "value_counts", "kind_mask", "constant_array"]


def _one(array: pa.Array) -> np.ndarray:
    typ = array.type
    if array.null_count or not (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        return array.to_numpy(zero_copy_only=False)
    dtype = np.dtype(typ.to_pandas_dtype())
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def numpy_of(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A primitive column as numpy (a view when it is one chunk)."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            return _one(values.chunk(0))
        if values.num_chunks == 0:
            return np.zeros(0, np.dtype(values.type.to_pandas_dtype()))
        return np.concatenate([_one(c) for c in values.chunks])
    return _one(values)


def longest_string(words: pa.Array) -> int:
    """Bytes of the longest value of a string array (from its offsets)."""
    if not len(words):
        return 0
    wide = pa.types.is_large_string(words.type)
    dtype = np.int64 if wide else np.int32
    offsets = np.frombuffer(words.buffers()[1], dtype=dtype, count=len(words) + 1,
                            offset=words.offset * np.dtype(dtype).itemsize)
    return int(np.diff(offsets).max())


def value_counts(values: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    """Rows per value of a (dictionary) string column, in order of first
    appearance, as ``pyarrow.compute.value_counts`` orders them."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    counts: dict[str, int] = {}
    for chunk in chunks:
        if not len(chunk):
            continue
        if not pa.types.is_dictionary(chunk.type):
            for word in chunk.to_pylist():
                counts[word] = counts.get(word, 0) + 1
            continue
        words = chunk.dictionary.to_pylist()
        idx = numpy_of(chunk.indices)
        n = np.bincount(idx, minlength=len(words))
        present, first = np.unique(idx, return_index=True)
        for j in np.argsort(first, kind="stable").tolist():
            code = int(present[j])
            counts[words[code]] = counts.get(words[code], 0) + int(n[code])
    return counts


def kind_mask(values: pa.ChunkedArray | pa.Array, word: str) -> np.ndarray:
    """Rows of a (dictionary) string column equal to ``word``, as a bool mask,
    compared on each chunk's dictionary (segments of one trace carry different
    dictionaries; no pyarrow.compute, which imports pandas)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    parts = []
    for chunk in chunks:
        if pa.types.is_dictionary(chunk.type):
            words = chunk.dictionary.to_pylist()
            parts.append(numpy_of(chunk.indices) == (words.index(word) if word in words else -1))
        else:
            parts.append(np.array([w == word for w in chunk.to_pylist()], bool))
    return np.concatenate(parts) if parts else np.zeros(0, bool)


def constant_array(value: int | str, typ: pa.DataType, n: int) -> pa.Array:
    """``n`` copies of ``value`` as an array of ``typ`` (a column an older trace
    lacks, filled with its default), built from buffers: ``pa.repeat`` and
    ``pa.array`` import pandas. Integer and dictionary-of-string types; any
    other goes through ``pa.repeat``."""
    if pa.types.is_integer(typ):
        return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(np.full(n, value, np.dtype(typ.to_pandas_dtype())))])
    if pa.types.is_dictionary(typ) and pa.types.is_string(typ.value_type) and pa.types.is_integer(typ.index_type):
        word = str(value).encode()
        offsets = pa.py_buffer(np.array([0, len(word)], np.int32))
        words = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(word)])
        indices = pa.py_buffer(np.zeros(n, np.dtype(typ.index_type.to_pandas_dtype())))
        return pa.DictionaryArray.from_buffers(typ, n, [None, indices], words)
    return pa.repeat(pa.scalar(value, typ), n)
