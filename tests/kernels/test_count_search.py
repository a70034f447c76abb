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
    # at C = 2 it bisects six: the reads do not follow the steps
    q, k, _ = prof.Shape(4, 2, 32, "bf16", torch.device("cpu"), 0, "synthetic").qkv(4096)
    syncs = {}
    for compression in (2.0, 5.0):
        m = get_method(name, budget_rule="exact")
        kn = m.knobs()

        def call(m=m, kn=kn, compression=compression):
            return m.plan(m.pattern(q, k, compression), 4096, kn)

        _, p = prof.profile_call(call)
        syncs[compression] = p.syncs
        if name == "vertical-slash":
            # the growth steps in one read, the bisection's result in another
            assert p.syncs <= prof.MAX_SYNCS, p.sync_sites
        else:
            # its own reads besides the search: the mass check at alpha = 0 (the bounds of the
            # counts, then their cells) and the bounds of the final counts
            assert p.syncs <= prof.MAX_SYNCS + 3, p.sync_sites
    assert syncs[2.0] == syncs[5.0]
