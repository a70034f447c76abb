"""The attention benchmark harness on tiny CPU sizes, and its FlexAttention mask."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from scalelaw.kernels import get_method  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "attention.py"


@pytest.fixture(scope="module")
def bench():
    if not SCRIPT.exists():
        pytest.skip("benchmarks/ not next to the tests")
    spec = importlib.util.spec_from_file_location("attention_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_mask_is_the_same_pattern(bench, qkv):
    from torch.nn.attention.flex_attention import flex_attention

    q, k, v = qkv(h=4, hkv=2, length=256, d=32)
    m = get_method("block-sparse", block_size=32)
    res = m.prefill(q, k, v, compression=3.0)
    mask = bench.flex_block_mask(m.pattern(q, k, 3.0), 256, q.device)
    out = flex_attention(q, k, v, block_mask=mask, enable_gqa=True)
    torch.testing.assert_close(out, res.out, atol=2e-5, rtol=1e-4)
    # The block lists hold the same blocks as the mask function.
    dense = mask.to_dense()[..., :8, :8].bool()
    assert torch.equal(dense, m.pattern(q, k, 3.0).block_mask())


def test_cpu_run_writes_rows_against_dense(bench, tmp_path):
    out = tmp_path / "t.csv"
    args = [
        "--device",
        "cpu",
        "--lengths",
        "256",
        "--compressions",
        "1",
        "4",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--head-dim",
        "32",
        "--dtype",
        "fp32",
        "--block-size",
        "16",
        "--repeats",
        "1",
        "--no-flex",
        "--out",
        str(out),
    ]
    assert bench.main(args) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == bench.COLUMNS
    methods = {(r["phase"], r["method"]) for r in rows}
    assert ("prefill", "dense") in methods and ("decode", "dense") in methods
    assert len(rows) == 2 + 2 * 3 * 2
    for r in rows:
        assert float(r["ms"]) > 0
        assert float(r["speedup"]) == pytest.approx(float(r["baseline_ms"]) / float(r["ms"]))
        assert r["device"].startswith("cpu") and r["torch"] == torch.__version__
    flex = [r for r in rows if r["method"] == "block-sparse"]
    assert all(float(r["kernel_ms"]) > 0 and r["flex_ms"] == "" for r in flex)
    c4 = [r for r in rows if r["compression"] == "4.0" and r["method"] != "dense"]
    assert all(abs(float(r["achieved_compression"]) / 4 - 1) <= 0.1 or r["note"] for r in c4)
