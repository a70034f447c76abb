"""The estimation profiler's counters on toy functions whose counts are known, and its --quick
run over every method."""

from __future__ import annotations

import csv

import pytest

torch = pytest.importorskip("torch")

MB = 2**20


@pytest.fixture(scope="module")
def prof(benchmark_script):
    return benchmark_script("estimation_profile")


def test_ops_are_counted_one_per_aten_call(prof):
    x = torch.ones(8)
    _, p = prof.profile_call(lambda: (x + 1) * 2)
    assert p.ops == 2 and p.op_counts == {"add": 1, "mul": 1}
    assert p.syncs == 0 and p.view_ops == 0
    _, p = prof.profile_call(lambda: x.view(2, 4)[0].sum())
    assert (p.ops, p.view_ops) == (3, 2)  # view and select are views, sum is not


def test_a_planted_item_is_one_sync_at_its_line(prof):
    x = torch.arange(10.0)

    def toy():
        y = x * 3  # no sync
        return y.sum().item()  # one sync: _local_scalar_dense

    out, p = prof.profile_call(toy)
    assert out == 135.0
    assert p.syncs == 1
    (site,) = p.sync_sites
    assert site.startswith("_local_scalar_dense @ ") and "test_estimation_profile.py" in site
    assert "(toy)" in site


@pytest.mark.parametrize(
    ("fn", "syncs"),
    [
        (lambda x: torch.where(x > 3, x, 0), 0),  # same shape: no sync
        (lambda x: int(x.max()), 1),
        (lambda x: bool((x > 3).any()), 1),
        (lambda x: x.nonzero(), 1),
        (lambda x: x[x > 3], 1),  # boolean mask: data-dependent shape
        (lambda x: x[torch.tensor([1, 2])], 0),  # integer index: known shape
        (lambda x: x.masked_select(x > 3), 1),
        (lambda x: torch.unique(x), 1),
        (lambda x: x.tolist(), 1),  # never reaches the dispatcher on a CPU tensor
        (lambda x: x.repeat_interleave(torch.ones(10, dtype=torch.long, device=x.device)), 1),
        (lambda x: x.repeat_interleave(torch.tensor([1] * 10)), 0),  # repeats on the host
        (lambda x: x.repeat_interleave(2), 0),
        (lambda x: [float(x[i]) for i in range(3)], 3),
    ],
)
def test_host_syncs(prof, fn, syncs):
    x = torch.arange(10.0)  # made outside the call: it stands in for a device tensor
    _, p = prof.profile_call(lambda: fn(x))
    assert p.syncs == syncs, p.sync_sites


@pytest.mark.parametrize(
    ("fn", "syncs"),
    [
        # a host copy costs one sync; reading it afterwards costs none
        (lambda x: (h := x.cpu(), int(h.max()), h.tolist(), h[2].item()), 1),
        (lambda x: (h := x.to("cpu"), bool((h > 3).any()), h[h > 3]), 1),
        # host tensors made on the host and read there never touch the device
        (lambda x: (n := torch.arange(4), n.tolist(), int(n.sum())), 0),
        # a blocking copy to the device waits for the stream; a non-blocking one does not
        (lambda x: torch.full((3,), 2.0).to(x.device), 1),
        (lambda x: torch.full((3,), 2.0).to(device=x.device, non_blocking=True), 0),
        (lambda x: torch.tensor([1.0, 2.0], device=x.device), 1),
        (lambda x: torch.arange(3, device=x.device).sum(), 0),
        # a Python scalar written into a device tensor is not a copy from the device
        (lambda x: x.clone().__setitem__(0, 5.0), 0),
    ],
)
def test_host_copies_on_a_cpu_stand_in(prof, fn, syncs):
    x = torch.arange(10.0)
    _, p = prof.profile_call(lambda: fn(x))
    assert p.syncs == syncs, p.sync_sites


def test_a_host_copy_made_before_the_call_stays_a_host_copy(prof):
    tracker = prof.Tracker(stand_in=True)
    x = torch.arange(10.0)
    with tracker.active():
        host = x.cpu()  # as a cache made after prefill keeps its lengths
    assert host is not x and tracker.is_host(host) and not tracker.is_host(x)
    _, p = prof.profile_call(lambda: (host.tolist(), int(x.max())), tracker)
    assert p.syncs == 1 and "_local_scalar_dense" in next(iter(p.sync_sites))


def test_peak_temporary_bytes_of_a_toy_function(prof):
    x = torch.ones(1024)

    def toy():
        a = torch.empty(MB, dtype=torch.uint8)  # 1 MB
        b = torch.empty(2 * MB, dtype=torch.uint8)  # 2 MB alongside: 3 MB at once
        del a, b
        c = torch.empty(MB, dtype=torch.float32)  # 4 MB alone: the peak
        d = c[:10]  # a view allocates nothing
        x.add_(1)  # in place on an argument allocates nothing
        del c, d
        return torch.zeros(MB // 4, dtype=torch.float32)  # 1 MB kept by the caller

    out, p = prof.profile_call(toy)
    assert p.peak_bytes == pytest.approx(4 * MB, rel=0.01)
    assert p.retained_bytes == out.untyped_storage().nbytes() == MB
    del out
    # the pre-existing input was never counted
    _, p = prof.profile_call(lambda: x.mul_(2))
    assert p.peak_bytes == 0 and p.ops == 1


def test_memory_cap_turns_an_oversized_allocation_into_an_error(prof):
    pytest.importorskip("resource")
    with prof.memory_cap(64 * MB), pytest.raises(RuntimeError) as err:
        torch.empty(1024 * MB, dtype=torch.uint8)
    assert prof.out_of_memory(err.value)
    torch.empty(256 * MB, dtype=torch.uint8)  # the cap is lifted on exit


def test_targets_apply_at_their_lengths_only(prof):
    def row(method, phase, length, **kw):
        return {"method": method, "phase": phase, "seq_len": length, "status": "ok", **kw}

    fast = row("vertical-slash", "prefill", 65536, syncs=2, ops=150)
    assert prof.targets(fast) == [("syncs <= 2", True), ("ops <= 150", True)]
    slow = row("flexprefill", "prefill", 65536, syncs=3, ops=20)
    assert prof.targets(slow) == [("syncs <= 2", False), ("ops <= 150", True)]
    assert prof.targets(row("vertical-slash", "prefill", 16384, syncs=9, ops=900)) == []
    assert prof.targets(row("block-sparse", "prefill", 65536, syncs=9, ops=900)) == []
    quest = row("quest", "decode", 131072, peak_temp_bytes=16 * MB + 1)
    assert prof.targets(quest) == [("temp <= 16 MB", False)]


def test_lengths_parse_with_k_suffixes(prof):
    assert prof.parse_lengths("16K,64k, 128K") == [16384, 65536, 131072]
    assert prof.parse_lengths("1000") == [1000]


def test_quick_run_profiles_every_method(prof, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert prof.main(["--quick", "--quiet", "--csv", str(out)]) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == prof.COLUMNS
    calls = {(r["method"], r["call"].split(" (")[0]) for r in rows}
    assert calls == {
        ("block-sparse", "pattern + plan"),
        ("vertical-slash", "pattern + plan"),
        ("flexprefill", "pattern + plan"),
        ("quest", "decode step"),
        ("quest", "page selection"),
        ("snapkv", "eviction"),
        ("snapkv", "decode step"),
        ("ada-snapkv", "eviction"),
        ("ada-snapkv", "decode step"),
    }
    for r in rows:
        assert r["status"] == "ok", r["note"]
        ops, syncs = int(r["ops"]), int(r["syncs"])
        assert ops > 0 and 0 <= syncs <= ops
        assert int(r["peak_temp_bytes"]) >= int(r["retained_bytes"]) >= 0
        assert float(r["seconds"]) >= 0
        assert r["target"] == r["target_met"] == ""  # the quick shape has no target rows
    prefill = [r for r in rows if r["phase"] == "prefill"]
    assert {int(r["seq_len"]) for r in prefill} == {1024}
    # estimation computes something: its temporaries are not zero
    assert all(int(r["peak_temp_bytes"]) > 0 for r in prefill)
    # an eviction returns the packed cache it kept
    assert all(int(r["retained_bytes"]) > 0 for r in rows if r["call"].startswith("eviction"))
    printed = capsys.readouterr().out
    assert "| method | call | L | block | ops | views | syncs | peak temp MB" in printed
    assert "| vertical-slash | pattern + plan | 1K | 64 |" in printed
