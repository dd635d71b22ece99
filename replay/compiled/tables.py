"""Open-addressing hash maps in plain numpy arrays, for the compiled engine.

A map is two arrays: ``keys`` (uint64) and ``vals`` (int64, -1 = empty slot),
with a power-of-two capacity, linear probing and Fibonacci hashing. A value is
a dense row number into the caller's field arrays, so a folio's state costs a
key, a row number and one row of int64 fields. Entries can be deleted
(backward-shift deletion keeps every probe chain whole), so rows of folios the
engine forgets are reused. The kernel stops before a map passes half full and
the driver grows it (:func:`grown`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cache import INLINE, JIT

__all__ = ["new_map", "grown", "h_find", "h_insert", "h_delete", "insert_all", "find_all"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(**INLINE)
def _home(key, mask):
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(32)) & mask


@njit(**INLINE)
def h_find(keys, vals, key):
    """The value stored for ``key``, or -1."""
    mask = keys.shape[0] - 1
    i = _home(key, mask)
    k = np.uint64(key)
    while vals[i] >= 0:
        if keys[i] == k:
            return vals[i]
        i = (i + 1) & mask
    return -1


@njit(**INLINE)
def h_insert(keys, vals, key, val):
    """Store ``val`` for ``key`` (which must be absent)."""
    mask = keys.shape[0] - 1
    i = _home(key, mask)
    while vals[i] >= 0:
        i = (i + 1) & mask
    keys[i] = np.uint64(key)
    vals[i] = val


@njit(**INLINE)
def h_row(keys, vals, rowkeys, counts, slot, key):
    """The row of ``key`` in a table indexed by the map (``keys``, ``vals``), appended when absent
    (``counts[slot]`` rows in use, ``rowkeys`` each row's key): (row, whether it was made)."""
    r = h_find(keys, vals, key)
    if r >= 0:
        return r, False
    r = counts[slot]
    counts[slot] = r + 1
    h_insert(keys, vals, key, r)
    rowkeys[r] = key
    return r, True


@njit(**INLINE)
def h_delete(keys, vals, key):
    """Remove ``key``; returns its value or -1."""
    mask = keys.shape[0] - 1
    k = np.uint64(key)
    i = _home(k, mask)
    while vals[i] >= 0 and keys[i] != k:
        i = (i + 1) & mask
    if vals[i] < 0:
        return -1
    out = vals[i]
    j = i
    while True:
        j = (j + 1) & mask
        if vals[j] < 0:
            break
        h = _home(keys[j], mask)
        # keys[j] stays if its home lies cyclically in (i, j]
        if (i < j and i < h <= j) or (i > j and (h > i or h <= j)):
            continue
        keys[i] = keys[j]
        vals[i] = vals[j]
        i = j
    vals[i] = -1
    return out


@njit(**JIT)
def _rehash(keys, vals, nkeys, nvals):
    for i in range(keys.shape[0]):
        if vals[i] >= 0:
            h_insert(nkeys, nvals, keys[i], vals[i])


@njit(**JIT)
def insert_all(keys, vals, new_keys, new_vals):
    """h_insert of every (key, value) pair: absent, distinct keys."""
    for i in range(new_keys.shape[0]):
        h_insert(keys, vals, new_keys[i], new_vals[i])


@njit(**JIT)
def find_all(keys, vals, wanted):
    """h_find of every key of ``wanted``."""
    out = np.empty(wanted.shape[0], np.int64)
    for i in range(wanted.shape[0]):
        out[i] = h_find(keys, vals, wanted[i])
    return out


def new_map(capacity: int) -> tuple[np.ndarray, np.ndarray]:
    cap = 1 << max(4, int(capacity - 1).bit_length())
    return np.zeros(cap, np.uint64), np.full(cap, -1, np.int64)


def grown(keys: np.ndarray, vals: np.ndarray, need: int) -> tuple[np.ndarray, np.ndarray]:
    """The map rehashed into a capacity that keeps ``need`` entries under half full."""
    cap = keys.shape[0]
    while cap < 2 * need + 16:
        cap *= 2
    if cap == keys.shape[0]:
        return keys, vals
    nkeys, nvals = new_map(cap)
    _rehash(keys, vals, nkeys, nvals)
    return nkeys, nvals
