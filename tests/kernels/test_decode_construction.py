"""Decode methods built to be fast on a GPU: quest scores pages with two matrix-vector products
over metadata in the cache's dtype, ada-snapkv reads per-head lengths with no mask, split
partials combine in one kernel. Each is checked against the computation it replaces (kept here
as the old code) and for the temporaries a step makes."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

from scalelaw.kernels import get_method  # noqa: E402
from scalelaw.kernels import quest as quest_mod  # noqa: E402
from scalelaw.kernels.cache import KVCache  # noqa: E402
from scalelaw.kernels.reference import decode_attention  # noqa: E402
from scalelaw.kernels.snapkv import RaggedKVCache, token_scores  # noqa: E402

TOL = {torch.float32: 1e-4, torch.float16: 3e-3}
SNAP = {"window": 16, "recent_tokens": 8, "kernel_size": 5}


# --- the code these replace, verbatim in substance --------------------------------------------


def old_page_scores(q_step, page_min, page_max):
    b, h, _, d = q_step.shape
    hkv = page_min.shape[1]
    qg = q_step.float().reshape(b, hkv, h // hkv, 1, d)
    lo = qg * page_min.float().unsqueeze(2)
    hi = qg * page_max.float().unsqueeze(2)
    return torch.maximum(lo, hi).sum(-1).sum(2)


def old_select_pages(q_step, page_min, page_max, n_pages, budget):
    newest = n_pages - 1
    earlier = min(budget if budget is not None else newest, newest)
    b, hkv = page_min.shape[:2]
    last = torch.full((b, hkv, 1), newest, dtype=torch.long)
    if earlier == 0:
        return last
    scores = old_page_scores(q_step, page_min[:, :, :newest], page_max[:, :, :newest])
    top = torch.topk(scores, earlier, dim=-1).indices
    return torch.sort(torch.cat([top, last], dim=-1), dim=-1).values


def old_page_bounds(k, page_size):
    """fp32 per-page min/max, NaN padding ignored (the old metadata)."""
    pad = -k.shape[2] % page_size
    pk = torch.nn.functional.pad(k.float(), (0, 0, 0, pad), value=float("nan"))
    pk = pk.reshape(*k.shape[:2], -1, page_size, k.shape[3])
    mins = torch.where(pk.isnan(), float("inf"), pk).amin(3)
    maxs = torch.where(pk.isnan(), float("-inf"), pk).amax(3)
    return mins, maxs


def old_gather_kept(k, v, keep):
    counts = keep.sum(-1)
    kmax = int(counts.max())
    order = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)[..., :kmax]
    idx = order[..., None].expand(*order.shape, k.shape[-1])
    kk, vv = k.gather(2, idx), v.gather(2, idx)
    if bool((counts == kmax).all()):
        return kk, vv, None
    return kk, vv, torch.arange(kmax) < counts[..., None]


# --- measuring what a call allocates ----------------------------------------------------------


class Created(TorchDispatchMode):
    """Every tensor an op returns in fresh storage (not one of its arguments' storages)."""

    def __init__(self):
        super().__init__()
        self.tensors = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        seen = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                self.tensors.append((tuple(t.shape), t.dtype, t.untyped_storage().nbytes()))
        return out


def created(fn):
    with Created() as mode:
        fn()
    return mode.tensors


def peak_bytes(fn):
    """Largest sum of bytes allocated and not yet freed during fn (the CPU allocator's view)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def quest_state(b=1, h=8, hkv=2, length=1000, d=32, c=8.0, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, 1, d, generator=g).to(dtype)
    k = torch.randn(b, hkv, length, d, generator=g).to(dtype)
    v = torch.randn(b, hkv, length, d, generator=g).to(dtype)
    m = get_method("quest")
    return m, q, m.prepare_cache(q, k, v, compression=c)


# --- quest ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("h", "hkv"), [(14, 2), (4, 4), (3, 1)])
def test_page_scores_equal_the_elementwise_bound(dtype, h, hkv):
    g = torch.Generator().manual_seed(h)
    q = torch.randn(2, h, 1, 48, generator=g).to(dtype)
    a = torch.randn(2, hkv, 70, 48, generator=g)
    b = a + torch.rand(2, hkv, 70, 48, generator=g)  # max >= min, as in real metadata
    lo, hi = a.to(dtype), b.to(dtype)
    want = old_page_scores(q, lo, hi)
    got = quest_mod.page_scores(q, lo, hi)
    assert got.dtype == torch.float32 and got.shape == want.shape
    # relative to the size of the terms summed, which a near-zero score does not show
    scale = old_page_scores(q.abs(), lo.abs(), hi.abs())
    assert ((got - want).abs() <= 1e-6 * scale).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_page_scores_equal_the_torch_ones(dtype):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 14, 1, 32, generator=g).to(dtype)
    lo = torch.randn(2, 2, 150, 32, generator=g)
    hi = (lo + torch.rand(2, 2, 150, 32, generator=g)).to(dtype)
    lo = lo.to(dtype)
    want = quest_mod.page_scores(q, lo, hi)
    got = quest_mod.page_scores(q, lo, hi, backend="triton")
    scale = old_page_scores(q.abs(), lo.abs(), hi.abs())
    assert ((got - want).abs() <= 1e-6 * scale).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("b", "h", "hkv", "length", "c"), [(2, 14, 2, 1003, 8.0), (1, 6, 3, 517, 3.0)]
)
def test_selected_pages_equal_the_old_selection(dtype, b, h, hkv, length, c):
    for seed in range(4):
        _, q, state = quest_state(b, h, hkv, length, 32, c, dtype, seed)
        state.append(state.k[:, :, :5].clone(), state.v[:, :, :5].clone())
        lo, hi = old_page_bounds(state.k, 16)
        want = old_select_pages(q, lo, hi, state.n_pages, state.budget)
        for be in ("torch", "triton"):
            if be == "triton" and dtype == torch.bfloat16:
                continue  # bf16 only on a GPU
            got = quest_mod.select_pages(q, state, backend=be)
            assert torch.equal(got, want), (seed, be)


def test_page_bounds_stay_in_the_cache_dtype_and_exact_across_appends():
    _, _, state = quest_state(length=45, dtype=torch.bfloat16)
    assert state.page_min.dtype == torch.bfloat16 and state.page_max.dtype == torch.bfloat16
    g = torch.Generator().manual_seed(9)
    for n in (1, 2, 16, 40, 3):  # fill the last page, cross pages, outgrow the buffer
        kn = torch.randn(1, 2, n, 32, generator=g).to(torch.bfloat16)
        state.append(kn, kn)
        lo, hi = old_page_bounds(state.k, 16)
        assert torch.equal(state.page_min.float(), lo) and torch.equal(state.page_max.float(), hi)


def test_quest_torch_path_in_chunks_equals_one_gather(monkeypatch):
    m, q, state = quest_state(b=2, h=6, hkv=3, length=777, c=4.0, dtype=torch.float16)
    pages = quest_mod.select_pages(q, state)
    scores = quest_mod.page_scores(q, state.page_min, state.page_max)
    whole = m.decode(q, state, backend="torch").out
    ks, vs, valid = quest_mod.gather_pages(state, pages)
    want = decode_attention(q.float(), ks.float(), vs.float(), valid)
    torch.testing.assert_close(whole.float(), want, atol=1e-3, rtol=1e-3)
    monkeypatch.setattr(quest_mod, "GATHER_CHUNK_ELEMENTS", 2 * 3 * 16 * 32 * 5)  # 5 pages
    monkeypatch.setattr(quest_mod, "SCORE_CHUNK_ELEMENTS", 2 * 3 * 32 * 7)  # 7 pages
    assert torch.equal(quest_mod.page_scores(q, state.page_min, state.page_max), scores)
    assert torch.equal(quest_mod.select_pages(q, state), pages)
    torch.testing.assert_close(m.decode(q, state, backend="torch").out, whole)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_quest_step_temporaries_scale_with_pages_not_pages_times_head_dim(monkeypatch, backend):
    # The 128K target (B=1, 28/4 heads, d=128, 8192 pages) is 16 MB, 4 bytes per metadata
    # element of one of the two bound tensors, with score chunks a quarter and gather chunks an
    # eighth of those elements; the same proportions at a small shape.
    b, h, hkv, length, d = 1, 28, 4, 4096, 64
    m, q, state = quest_state(b, h, hkv, length, d, 10.0, torch.float16)
    meta = b * hkv * state.n_pages * d
    # raising=False: the same bound holds a version without these knobs to account
    monkeypatch.setattr(quest_mod, "SCORE_CHUNK_ELEMENTS", meta // 4, raising=False)
    monkeypatch.setattr(quest_mod, "GATHER_CHUNK_ELEMENTS", meta // 8, raising=False)
    step = lambda: m.decode(q, state, backend=backend)  # noqa: E731
    step()  # the interpreter's first launch compiles nothing it keeps; measure a warm call
    big = [t for t in created(step) if t[1] == torch.float32 and math.prod(t[0]) >= meta // 2]
    assert big == [], big
    assert peak_bytes(step) <= 4 * meta
    # the measure sees the old elementwise form: G times a whole fp32 bound tensor, three times
    old = lambda: old_page_scores(q, state.page_min, state.page_max)  # noqa: E731
    assert peak_bytes(old) > 3 * 7 * 4 * meta * 0.9


def test_combine_kernel_equals_the_torch_combine():
    from scalelaw.kernels.triton_decode import combine_splits, combine_splits_torch

    g = torch.Generator().manual_seed(5)
    for n_splits in (1, 3, 45):  # 45: more splits than one block of the kernel
        acc = torch.randn(2, 3, n_splits, 40, generator=g)
        m = torch.randn(2, 3, n_splits, generator=g) * 4
        lsum = torch.rand(2, 3, n_splits, generator=g) + 0.5
        if n_splits > 1:  # an empty split, as a ragged head's last splits are
            m[:, :, -1], lsum[:, :, -1], acc[:, :, -1] = -1.0e30, 0.0, 0.0
        want = combine_splits_torch(acc, m, lsum)
        for dtype in (torch.float32, torch.float16):
            got = combine_splits(acc, m, lsum, dtype)
            assert got.shape == (2, 3, 1, 40) and got.dtype == dtype
            torch.testing.assert_close(got[:, :, 0].float(), want, atol=TOL[dtype], rtol=TOL[dtype])


# --- ada-snapkv -------------------------------------------------------------------------------


def ada_inputs(b=2, h=14, hkv=2, length=203, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, length, d, generator=g)
    k = torch.randn(b, hkv, length, d, generator=g)
    v = torch.randn(b, hkv, length, d, generator=g)
    # heads that look at different amounts of the prompt, so their kept counts differ
    k[:, 0, 40:90] += 3 * q[:, :7, -16:].mean((1, 2))[:, None]
    return q, k, v


def masked_reference(m, q, k, v, c):
    """The old ada-snapkv cache: kept tokens padded to the longest head, with a valid mask."""
    kn = m.knobs() | SNAP
    scores = token_scores(q, k, kn["window"], kn["kernel_size"], m.SCORE)
    from scalelaw.kernels.budgets import snapkv_capacity

    keep = m._keep_mask(scores, snapkv_capacity(k.shape[2], c), kn)
    kk, vv, valid = old_gather_kept(k, v, keep)
    return KVCache(m.name, kk, vv, n_prompt=k.shape[2], valid=valid, requested_compression=c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ada_snapkv_per_head_lengths_equal_the_masked_step(dtype):
    q, k, v = ada_inputs()
    m = get_method("ada-snapkv", **SNAP)
    state = m.prepare_cache(q, k, v, compression=3.0)
    old = masked_reference(m, q, k, v, 3.0)
    assert isinstance(state, RaggedKVCache)
    lengths = state.lengths.tolist()
    assert lengths == old.valid.sum(-1).tolist()
    assert len({n for row in lengths for n in row}) > 1, "heads should keep different counts"
    assert all(n % 16 for row in lengths for n in row)
    assert state.achieved_compression == pytest.approx(old.achieved_compression)
    g = torch.Generator().manual_seed(1)
    for n in (1, 3, 1):
        kn, vn = torch.randn(2, 2, n, 32, generator=g), torch.randn(2, 2, n, 32, generator=g)
        state.append(kn, vn)
        old.append(kn, vn)
        qs = torch.randn(2, 14, 1, 32, generator=g)
        want = decode_attention(qs, old.k, old.v, old.valid)
        got = m.decode(qs, state, backend="torch")
        torch.testing.assert_close(got.out, want, atol=1e-5, rtol=1e-4)
        assert got.achieved_compression == pytest.approx(old.achieved_compression)
        tri = m.decode(qs.to(dtype), cast(state, dtype), backend="triton").out
        torch.testing.assert_close(tri.float(), want, atol=TOL[dtype], rtol=TOL[dtype])
    # each head's kept tokens, then its generated ones, in order at the front of its row
    for bi in range(2):
        for h in range(2):
            mine = state.k[bi, h, : state.lengths[bi, h]]
            torch.testing.assert_close(mine, old.k[bi, h][old.valid[bi, h]])


def cast(state, dtype):
    """The same ragged cache in another dtype (the lengths carried over)."""
    return RaggedKVCache(
        state.method,
        state.k.to(dtype),
        state.v.to(dtype),
        state.lengths,
        n_prompt=state.n_prompt,
        knobs=state.knobs,
    )


def test_ragged_kernel_with_many_splits_and_short_heads():
    from scalelaw.kernels.triton_decode import ragged_decode_attention

    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 6, 1, 32, generator=g)
    k = torch.randn(2, 3, 300, 32, generator=g)
    v = torch.randn(2, 3, 300, 32, generator=g)
    lengths = torch.tensor([[300, 5, 129], [64, 200, 1]])
    want = decode_attention(q, k, v, torch.arange(300) < lengths[..., None])
    got = ragged_decode_attention(q, k, v, lengths, 300, tiles_per_split=1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_ada_snapkv_step_builds_no_mask(backend):
    q, k, v = ada_inputs()
    m = get_method("ada-snapkv", **SNAP)
    state = m.prepare_cache(q, k, v, compression=3.0)
    state.append(k[:, :, :1], v[:, :, :1])
    made = created(lambda: m.decode(q[:, :, -1:], state, backend=backend))
    masks = [t for t in made if t[1] == torch.bool or state.length in t[0]]
    assert masks == [], masks


def test_eviction_is_a_step_of_its_own_with_its_work():
    q, k, v = ada_inputs()
    for name in ("snapkv", "ada-snapkv"):
        m = get_method(name, **SNAP)
        ev = m.evict(q, k, v, compression=3.0)
        state = m.prepare_cache(q, k, v, compression=3.0)
        assert torch.equal(ev.k, state.k) and torch.equal(ev.v, state.v)
        assert state.eviction == ev.work
        w = ev.work
        assert w["score_flops"] == 2 * 2 * 14 * 16 * 203 * 32
        assert w["select_elements"] == 2 * 2 * 203
        assert w["pack_bytes"] == 2 * 2 * 2 * 2 * ev.k.shape[2] * 32 * 4
        if name == "ada-snapkv":
            assert torch.equal(ev.lengths, state.lengths.long())
        else:
            assert (ev.lengths == state.k.shape[2]).all() and state.valid is None
        none = m.evict(q, k, v, compression=1.0)
        assert none.lengths is None and none.k is k and set(none.work.values()) == {0.0}
