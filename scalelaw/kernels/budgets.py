"""Budget arithmetic shared by the kernels and the method spec: how C turns into a budget and
what a budget achieves, in plain Python (no torch), so grid validation can run it up front."""

from __future__ import annotations

import math


def causal_entries(length: int) -> int:
    return length * (length + 1) // 2


def round_half_up(x: float) -> int:
    # Python's round() rounds halves to even; budgets round halves up, as the study's tables do.
    return math.floor(x + 0.5)


# --- block-sparse ----------------------------------------------------------------------------


def block_entries(length: int, bs: int, k: int) -> int:
    """Causal (query, key) pairs computed when every query block keeps k key blocks.

    Query block i keeps min(i + 1, k) blocks: its diagonal block (a triangle) and full blocks
    to its left. All blocks have `bs` tokens except the last, which has what is left.
    """
    nb = math.ceil(length / bs)
    k = max(1, min(k, nb))
    last = length - (nb - 1) * bs
    tri = (nb - 1) * bs * (bs + 1) // 2 + last * (last + 1) // 2
    # sum over rows of len_i * min(i, k - 1): full rows i = 0..nb-2, then the last row
    a, m = k - 1, nb - 2
    if m < 0:
        full = 0
    elif a >= m:
        full = m * (m + 1) // 2
    else:
        full = a * (a + 1) // 2 + a * (m - a)
    off = bs * full + last * min(nb - 1, a)
    return tri + bs * off


def block_compression(length: int, bs: int, k: int) -> float:
    """Achieved C, counted token by token, of a uniform count of k key blocks per query block."""
    return causal_entries(length) / block_entries(length, bs, k)


def block_pairs_compression(n_blocks: int, per_row: int) -> float:
    """C as the reference study counts it: causal block pairs over the block pairs kept, every
    row keeping min(its causal blocks, per_row) (a diagonal block counts whole)."""
    k = max(1, min(per_row, n_blocks))
    kept = k * (k + 1) // 2 + k * (n_blocks - k)
    return n_blocks * (n_blocks + 1) / 2 / kept


def choose_blocks_per_row(length: int, bs: int, compression: float, k_min: int) -> int:
    """The uniform count k >= k_min whose C, counted in block pairs as the study counts it, is
    closest to the request in log ratio: the study's `top_chunks` (equal to its table at every
    published length and level)."""
    nb = math.ceil(length / bs)
    lo = max(1, min(k_min, nb))
    hi = nb
    target = math.log(compression)
    # C falls as k grows: find the first k whose C is at or below the request, then compare
    # it with its left neighbour.
    a, b = lo, hi
    while a < b:
        mid = (a + b) // 2
        if block_pairs_compression(nb, mid) <= compression:
            b = mid
        else:
            a = mid + 1
    best = a
    if a > lo:
        left = abs(math.log(block_pairs_compression(nb, a - 1)) - target)
        if left < abs(math.log(block_pairs_compression(nb, a)) - target):
            best = a - 1
    return best


# --- vertical-slash and flexprefill (MInference's index) -------------------------------------


def contiguous_lines_cells(length: int, bs: int, n_diagonals: int, sink_columns: int) -> int:
    """Cells MInference's index computes for diagonals 0..n-1 and the first `sink_columns` columns.

    Query block m (rows up to e = (m + 1) bs) turns diagonal o < e into the key range
    [max(e - o, bs) - bs, max(e - o, bs)); contiguous diagonals merge into one run of tiles of
    width bs starting at the range of the farthest diagonal. A column counts bs cells in every
    query block where no tile covers it.
    """
    nb = math.ceil(length / bs)
    cells = 0
    for m in range(nb):
        e = (m + 1) * bs
        o_max = min(n_diagonals, e) - 1
        if e - o_max < bs:  # the farthest diagonal's range is clamped to [0, bs)
            start, tiles = 0, m + 1
        else:
            start = e - o_max - bs
            tiles = 1 + math.ceil(o_max / bs)
        cells += tiles * bs * bs + min(sink_columns, start) * bs
    return cells


def forced_lines_compression(
    length: int, bs: int, local_diagonals: int, sink_columns: int
) -> float:
    """Upper bound on the C of vertical-slash patterns: the always-kept lines alone."""
    cells = contiguous_lines_cells(length, bs, local_diagonals, sink_columns)
    return max(1.0, causal_entries(length) / cells)


# --- quest ---------------------------------------------------------------------------------


def quest_budget_pages(length: int, compression: float, page_size: int) -> int | None:
    """Pages read besides the newest one; None at C = 1 (every page, however long the cache)."""
    if compression == 1.0:
        return None
    return round_half_up(length / compression / page_size)


def quest_tokens_read(cache_len: int, budget_pages: int | None, page_size: int) -> int:
    """Tokens one step reads: `budget_pages` earlier pages plus the page of the newest token."""
    n_pages = math.ceil(cache_len / page_size)
    newest = cache_len - (n_pages - 1) * page_size
    if budget_pages is None:
        return cache_len
    return min(budget_pages, n_pages - 1) * page_size + newest


# --- snapkv and ada-snapkv -----------------------------------------------------------------


def snapkv_capacity(length: int, compression: float) -> int:
    """Tokens kept per KV head of a prompt of `length` tokens at C."""
    return max(1, round_half_up(length / compression))


def protected_tokens(length: int, sink: int, recent: int) -> int:
    """Sink and recent tokens of a prompt (never evicted)."""
    return min(length, sink) + min(max(0, length - sink), recent)


def ada_floor(capacity: int, floor_fraction: float, protected: int) -> int:
    """Tokens every head keeps before the layer-wide top-k: the study's min_capacity_per_head."""
    return max(int(capacity * floor_fraction), protected)
