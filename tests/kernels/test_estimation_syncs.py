"""Vertical-slash and flexprefill estimation on a GPU's terms: one layer call,
`m.plan(m.pattern(q, k, C), L, knobs)`, counted by `benchmarks/estimation_profile.py`'s modes.

The host must not wait for the device inside the call (the index widths come from host-known
budgets), and the ATen ops must not scale with L (no loops over chunks of rows at these sizes):
only pointer doubling grows, by a logarithm.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from scalelaw.kernels import get_method  # noqa: E402

LINES = ("vertical-slash", "flexprefill")


@pytest.fixture(scope="module")
def prof(benchmark_script):
    return benchmark_script("estimation_profile")


@pytest.fixture(scope="module")
def inputs(prof):
    shape = prof.Shape(4, 2, 32, "bf16", torch.device("cpu"), 0, "synthetic")
    cache = {}

    def qk(length):
        if length not in cache:
            q, k, _ = shape.qkv(length)
            cache[length] = (q, k)
        return cache[length]

    return qk


def layer_call(prof, inputs, name, length, **knobs):
    q, k = inputs(length)
    m = get_method(name, **knobs)
    kn = m.knobs()
    _, p = prof.profile_call(lambda: m.plan(m.pattern(q, k, 10.0), length, kn))
    return p


@pytest.mark.parametrize("name", LINES)
def test_one_layer_call_syncs_at_most_twice(prof, inputs, name):
    p = layer_call(prof, inputs, name, 4096)
    assert p.syncs <= prof.MAX_SYNCS, p.sync_sites


def test_vertical_slash_study_budget_never_waits_for_the_device(prof, inputs):
    # the study's line count is known on the host, and so is every width of the index
    p = layer_call(prof, inputs, "vertical-slash", 4096)
    assert p.syncs == 0, p.sync_sites


def test_flexprefill_reads_its_line_counts_once(prof, inputs):
    # per-head counts follow the attention mass: one read of their bounds sizes the index
    p = layer_call(prof, inputs, "flexprefill", 4096)
    assert p.syncs == 1, p.sync_sites


@pytest.mark.parametrize("name", LINES)
def test_ops_do_not_scale_with_length(prof, inputs, name):
    short, long = 4096, 16384
    a = layer_call(prof, inputs, name, short)
    b = layer_call(prof, inputs, name, long)
    # pointer doubling: two ops per doubling of the widest tile list, at most one per doubling
    # of L
    slack = 2 * math.ceil(math.log2(long / short))
    assert b.ops <= a.ops + slack, (a.ops, b.ops, (b.op_counts - a.op_counts).most_common(8))


@pytest.mark.parametrize("name", LINES)
def test_gpu_window_scores_count_as_their_buffers(prof, inputs, name):
    # as a GPU scores the window: three kernel launches (no ATen ops) and their outputs, instead
    # of the PyTorch path's probabilities; the pattern the scores give is the same
    q, k = inputs(4096)
    m = get_method(name)
    kn = m.knobs()

    def call():
        return m.plan(m.pattern(q, k, 10.0), 4096, kn)

    want, on_cpu = prof.profile_call(call)
    tracker = prof.Tracker(stand_in=True)
    with prof.triton_scores(tracker):
        got, on_gpu = prof.profile_call(call, tracker)
    assert on_gpu.syncs == on_cpu.syncs
    assert on_gpu.ops < on_cpu.ops - 20 and on_gpu.peak_bytes < on_cpu.peak_bytes / 4
    assert torch.equal(got.cells, want.cells) and torch.equal(got.index.counts, want.index.counts)


@pytest.mark.parametrize("name", LINES)
def test_gpu_index_is_no_loop_over_row_chunks(prof, inputs, name, monkeypatch):
    # as a GPU builds the tile index: two kernel launches, however many chunks of rows the
    # PyTorch build would take to bound its (query blocks x lines) grids; the index is the same
    import scalelaw.kernels.tiles as tiles

    q, k = inputs(4096)
    m = get_method(name)
    kn = m.knobs()

    def call():
        return m.plan(m.pattern(q, k, 10.0), 4096, kn)

    monkeypatch.setattr(tiles, "CHUNK_ELEMENTS", 1 << 12)
    want, on_cpu = prof.profile_call(call)
    tracker = prof.Tracker(stand_in=True)
    with prof.triton_scores(tracker):
        got, on_gpu = prof.profile_call(call, tracker)
    assert on_cpu.ops > prof.MAX_OPS  # the chunks do repeat ops on the PyTorch path
    assert on_gpu.ops <= prof.MAX_OPS and on_gpu.syncs <= 1, on_gpu.op_counts.most_common(8)
    for part in ("starts", "counts", "cols", "col_counts"):
        assert torch.equal(getattr(got.index, part), getattr(want.index, part)), part
