"""Quest's page selection orders the top pages without a sort: the chosen pages are marked and
each is placed at its rank among them. Checked against the sorted top-k it replaces, at shapes
a GPU run meets (pages not filling the cache, ties, batch 2, GQA 7:1), and for what it runs:
no sort, no host sync, no temporary beyond a few bytes per page."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from scalelaw.kernels import get_method  # noqa: E402
from scalelaw.kernels import quest as quest_mod  # noqa: E402


@pytest.fixture(scope="module")
def prof(benchmark_script):
    return benchmark_script("estimation_profile")


def sorted_top_k(scores, earlier, newest):
    """The selection as it was: top-k indices sorted, then the newest page."""
    b, hkv = scores.shape[:2]
    earlier = min(earlier, newest)
    last = torch.full((b, hkv, 1), newest, dtype=torch.long)
    if earlier == 0:
        return last
    top = torch.topk(scores, earlier, dim=-1).indices
    return torch.cat([top.sort(dim=-1).values, last], dim=-1)


def quest_state(b, h, hkv, length, d=32, dtype=torch.float32, seed=0, distinct_pages=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, 1, d, generator=g).to(dtype)
    k = torch.randn(b, hkv, length, d, generator=g)
    if distinct_pages is not None:
        # pages repeating a few contents, so many pages score exactly alike
        n = -(-length // 16)
        pick = torch.randint(distinct_pages, (n,), generator=g)
        k = k[:, :, :16].repeat(1, 1, n, 1) + pick.repeat_interleave(16)[None, None, :, None]
        k = k[:, :, :length]
    v = torch.randn(b, hkv, length, d, generator=g).to(dtype)
    m = get_method("quest")
    return q, m.prepare_cache(q, k.to(dtype), v, compression=8.0)


def budgets(n_pages):
    newest = n_pages - 1
    return sorted(
        {n for n in (0, 1, 2, newest // 3, newest // 2, newest - 2, newest - 1) if n >= 0}
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("b", "h", "hkv", "length", "distinct"),
    [
        (2, 14, 2, 1003, None),  # GQA 7:1, batch 2, last page partly filled
        (2, 14, 2, 1003, 3),  # the same with most pages tied
        (1, 6, 3, 306, 2),
        (2, 7, 1, 17, None),  # two pages: one earlier page, one partial
    ],
)
def test_selected_pages_equal_the_sorted_top_k(dtype, b, h, hkv, length, distinct):
    q, state = quest_state(b, h, hkv, length, dtype=dtype, distinct_pages=distinct)
    newest = state.n_pages - 1
    scores = quest_mod.page_scores(q, state.page_min[:, :, :newest], state.page_max[:, :, :newest])
    if distinct is not None:
        assert scores.unique().numel() <= distinct * b * hkv
    for budget in budgets(state.n_pages):
        state.budget = budget
        want = sorted_top_k(scores, budget, newest)
        got = quest_mod.select_pages(q, state, backend="torch")
        assert got.dtype == torch.long
        assert torch.equal(got, want), budget


@pytest.mark.parametrize("seed", range(3))
def test_ties_straddling_the_budget_pick_the_pages_top_k_picks(monkeypatch, seed):
    # scores of a few integer values: every budget cuts through a run of equal scores
    b, hkv, n_pages = 2, 2, 301
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(4, (b, hkv, n_pages - 1), generator=g).float()
    monkeypatch.setattr(quest_mod, "page_scores", lambda *a, **k: scores)
    q, state = quest_state(b, 14, hkv, n_pages * 16 - 5)
    assert state.n_pages == n_pages
    for budget in range(0, n_pages - 1, 7):
        state.budget = budget
        got = quest_mod.select_pages(q, state)
        assert torch.equal(got, sorted_top_k(scores, budget, n_pages - 1)), budget


def test_reading_every_page_lists_them_in_order():
    q, state = quest_state(2, 14, 2, 306)
    for budget in (state.n_pages - 1, state.n_pages + 5, None):
        state.budget = budget
        got = quest_mod.select_pages(q, state)
        assert torch.equal(got, torch.arange(state.n_pages).expand(2, 2, -1))


def test_selection_runs_no_sort_no_sync_and_small_temporaries(prof, monkeypatch):
    b, h, hkv, length = 2, 14, 2, 4096 * 16 + 3
    q, state = quest_state(b, h, hkv, length, d=16)
    newest = state.n_pages - 1
    scores = quest_mod.page_scores(q, state.page_min[:, :, :newest], state.page_max[:, :, :newest])
    # the scores as given, so the profile sees the selection alone
    monkeypatch.setattr(quest_mod, "page_scores", lambda *a, **k: scores)
    want = sorted_top_k(scores, state.budget, newest)
    got, p = prof.profile_call(lambda: quest_mod.select_pages(q, state))
    assert torch.equal(got, want)
    assert "sort" not in p.op_counts and "argsort" not in p.op_counts, p.op_counts
    assert "cat" not in p.op_counts, p.op_counts
    assert p.syncs == 0, p.sync_sites
    # a mark and a rank per page (1 + 8 bytes), the page numbers, the top-k and the result:
    # under 16 bytes per page of each row, where one (pages x head_dim) fp32 temporary is 64
    limit = 16 * b * hkv * state.n_pages
    assert p.peak_bytes <= limit, (p.peak_bytes, limit)
