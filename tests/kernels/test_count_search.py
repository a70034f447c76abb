"""The exact budget rule's count search (`uniform_count`) on a GPU's terms: the count it picks is
the one the host's search (one read of the device a step) picked, and a layer call reads the
device a fixed number of times, however many steps the search takes."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from scalelaw.kernels import get_method  # noqa: E402
from scalelaw.kernels.base import causal_entries  # noqa: E402
from scalelaw.kernels.tiles import LineBounds, lines_cells  # noqa: E402
from scalelaw.kernels.vertical_slash import uniform_count  # noqa: E402


def host_search(col_order, diag_order, length, compression, n_min, bs):
    """The search as it ran before: grow n by doubling, then bisect, reading the mean cells of
    every count it visits."""
    b, h = col_order.shape[:2]
    target = causal_entries(length) / compression
    seen = {}

    def cells(n):
        if n not in seen:
            full = torch.full((b, h), n)
            bounds = LineBounds.uniform(n, length)
            seen[n] = float(
                lines_cells(col_order, diag_order, full, full, length, bs, bounds).mean()
            )
        return seen[n]

    lo = max(1, min(n_min, length))
    if cells(lo) >= target:
        return lo
    below, hi = lo, lo
    while hi < length and cells(hi) < target:
        below, hi = hi, min(length, 2 * hi)
    if cells(hi) < target:
        return hi
    a, z = below + 1, hi
    while a < z:
        mid = (a + z) // 2
        if cells(mid) >= target:
            z = mid
        else:
            a = mid + 1
    if a > lo and abs(math.log(cells(a - 1) / target)) < abs(math.log(cells(a) / target)):
        return a - 1
    return a


def orders(b, h, length, seed):
    g = torch.Generator().manual_seed(seed)
    cols = torch.stack([torch.randperm(length, generator=g) for _ in range(b * h)])
    diags = torch.stack([torch.randperm(length, generator=g) for _ in range(b * h)])
    return cols.view(b, h, length), diags.view(b, h, length)


@pytest.mark.parametrize(
    ("length", "bs", "n_min", "seed"),
    [(300, 16, 2, 0), (1000, 32, 4, 1), (777, 8, 2, 2), (2048, 64, 64, 3)],
)
def test_count_is_the_host_searchs(length, bs, n_min, seed):
    # odd lengths, batch 2, scattered lines: counts from the floor to every line
    c, d = orders(2, 3, length, seed)
    for compression in (1.05, 1.5, 2.0, 3.3, 7.0, 10.0, 40.0, 1000.0):
        want = host_search(c, d, length, compression, n_min, bs)
        assert uniform_count(c, d, length, compression, n_min, bs) == want, compression


@pytest.fixture(scope="module")
def prof(benchmark_script):
    return benchmark_script("estimation_profile")


@pytest.mark.parametrize("name", ["vertical-slash", "flexprefill"])
def test_exact_rule_reads_the_device_a_fixed_number_of_times(prof, name):
    # at C = 5 the search grows the count twice and bisects five steps (eight reads before);
    # at C = 2 it bisects six: the reads do not follow the steps (flexprefill: 20 steps of
    # alpha, five reads before)
    q, k, _ = prof.Shape(4, 2, 32, "bf16", torch.device("cpu"), 0, "synthetic").qkv(4096)
    syncs = {}
    for compression in (2.0, 5.0):
        # flexprefill with few min_budget lines, so that alpha is solved, not the floor's
        m = get_method(name, budget_rule="exact", **({"min_budget": 16} if "flex" in name else {}))
        kn = m.knobs()

        def call(m=m, kn=kn, compression=compression):
            return m.plan(m.pattern(q, k, compression), 4096, kn)

        _, p = prof.profile_call(call)
        syncs[compression] = p.syncs
        # vertical-slash: the growth steps in one read, the bisection's result in another;
        # flexprefill: the widest counts of its ladder of alphas, then their cells
        assert p.syncs <= prof.MAX_SYNCS, p.sync_sites
    assert syncs[2.0] == syncs[5.0]


def test_flexprefill_floor_rows_read_the_device_three_times(prof):
    # min_budget lines alone denser than C: the ladder's first read finds it (the cells at
    # alpha = 0 come with the counts' widths), the uniform count search adds its two, the
    # floor's counts need no read of their own; and the ladder's other levels are not built
    q, k, _ = prof.Shape(4, 2, 32, "bf16", torch.device("cpu"), 0, "synthetic").qkv(4096)
    m = get_method("flexprefill", budget_rule="exact", min_budget=1024)
    pattern, p = prof.profile_call(lambda: m.pattern(q, k, 5.0))
    assert pattern[3]["alpha"] == 0.0
    assert p.syncs <= 3, p.sync_sites
    solved, q_solved = prof.profile_call(
        lambda: get_method("flexprefill", budget_rule="exact", min_budget=16).pattern(q, k, 5.0)
    )
    assert solved[3]["alpha"] > 0.0
    assert p.ops < q_solved.ops, (p.ops, q_solved.ops)


def host_alpha(q, k, compression, kn):
    """Flexprefill's alpha under the exact rule as it was searched before: bisection on [0, 1],
    reading the mean cells of the line heads at every step (None: alpha = 0 is already denser
    than C)."""
    from scalelaw.kernels.flexprefill import ALPHA_STEPS, cover_count, cumulative_mass
    from scalelaw.kernels.vertical_slash import rank_with_mandatory, window_scores

    length, bs = q.shape[2], kn["block_size"]
    cols, diags = window_scores(q, k, kn["window"])
    c_order = rank_with_mandatory(cols, kn["sink_columns"])
    d_order = rank_with_mandatory(diags, kn["local_diagonals"])
    c_mass, d_mass = cumulative_mass(cols), cumulative_mass(diags)
    floor, target = kn["min_budget"], causal_entries(length) / compression

    def cells(alpha):
        n_c = cover_count(c_mass, alpha).clamp(max(floor, kn["sink_columns"]), length)
        n_d = cover_count(d_mass, alpha).clamp(max(floor, kn["local_diagonals"]), length)
        return float(lines_cells(c_order, d_order, n_c, n_d, length, bs).mean())

    if cells(0.0) > target:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(ALPHA_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cells(mid) < target else (lo, mid)
    below, above = cells(lo), cells(hi)
    return lo if abs(math.log(below / target)) < abs(math.log(above / target)) else hi


@pytest.mark.parametrize(("length", "heads", "kv_heads", "seed"), [(1000, 7, 1, 0), (777, 4, 2, 1)])
def test_flexprefill_alpha_is_the_host_searchs(length, heads, kv_heads, seed):
    # odd lengths, GQA 7:1, batch 2: the alpha searched on the device, and the counts it keeps,
    # are those of the host's bisection at every C (the floor's rows included)
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, heads, length, 32, generator=g)
    k = torch.randn(2, kv_heads, length, 32, generator=g).repeat_interleave(heads // kv_heads, 1)
    m = get_method("flexprefill", budget_rule="exact", block_size=16, min_budget=16)
    kn = m.knobs()
    solved = 0
    for compression in (1.2, 2.0, 3.0, 5.0, 10.0, 20.0):
        want = host_alpha(q, k, compression, kn)
        _, _, _, stats = m.pattern(q, k, compression)
        if want is None:
            assert stats["alpha"] == 0.0, compression
        else:
            assert stats["alpha"] == pytest.approx(want, abs=0.0), compression
            solved += 1
    assert solved >= 3
