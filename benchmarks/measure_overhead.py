"""Overhead of a sweep: time per sample inside `run_sweep` versus a bare `model.generate`.

Both sides see the same model, the same prompts and produce the same number of new tokens; the
sweep adds task generation, tokenizer-exact length fitting, the attention router, scoring and a
durable journal append per configuration. Prints the ratio (target <= 1.15).

    python benchmarks/measure_overhead.py --model smollm2-135m --length 512 --samples 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from scalelaw.measure.grid import parse_grid
from scalelaw.measure.runner import cached_model
from scalelaw.measure.sweep import run_sweep
from scalelaw.measure.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lm = cached_model(args.model, "auto", 0)
    task = get_task("niah-multikey", needles=2, queries=1)
    prompts = [
        lm.encode(s.prompt) for s in task.samples(lm.count_tokens, args.length, 0, args.samples)
    ]

    grid = parse_grid(
        {
            "seed": 0,
            "samples": args.samples,
            "max_new_tokens": args.new_tokens,
            "lengths": [args.length],
            "compression": [1],
            "models": [args.model],
            "methods": ["dense"],
            "tasks": {"niah-multikey": {"needles": 2, "queries": 1}},
        }
    )

    def sweep_once() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_sweep(grid, Path(tmp) / "r.parquet", quiet=True)
            return (time.perf_counter() - start) / args.samples

    # the bare side generates exactly as many tokens as the sweep did for each prompt
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "probe.parquet"
        run_sweep(grid, out, quiet=True)
        lengths = pl.read_parquet(out.with_name("probe.predictions.parquet"))[
            "new_tokens"
        ].to_list()

    model = lm.model

    def bare_once() -> float:
        model.set_attn_implementation("sdpa")
        try:
            start = time.perf_counter()
            with torch.inference_mode():
                for ids, n in zip(prompts, lengths, strict=True):
                    model.generate(
                        torch.tensor([ids], device=lm.device),
                        max_new_tokens=n,
                        min_new_tokens=n,
                        do_sample=False,
                        pad_token_id=lm.tokenizer.eos_token_id,
                    )
            return (time.perf_counter() - start) / args.samples
        finally:
            model.set_attn_implementation("scalelaw")

    bare_once()  # warm up both paths
    sweep, bare = [], []
    for _ in range(args.repeats):
        bare.append(bare_once())
        sweep.append(sweep_once())
    s, b = min(sweep), min(bare)
    print(
        f"model {args.model}, {args.length} tokens, {args.samples} samples, "
        f"{statistics.fmean(lengths):.1f} new tokens/sample, {args.threads} thread(s), "
        f"device {lm.device}"
    )
    print(f"sweep  {s * 1000:9.1f} ms/sample (best of {args.repeats})")
    print(f"bare   {b * 1000:9.1f} ms/sample (best of {args.repeats}, model.generate)")
    print(f"ratio  {s / b:9.3f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
