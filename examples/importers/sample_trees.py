"""Write small sample result trees in the formats that `scalelaw import` reads.

    python examples/importers/sample_trees.py samples/

writes ``samples/study/results/...`` (the reference study's pipeline layout) and
``samples/kvpress/...`` (KVPress evaluation folders). Scores are simulated, not measured: each
sample is right with probability sigmoid(eps + alpha ln N + beta ln L + gamma ln C + delta[task])
under made-up coefficients, drawn from a fixed seed, so the files (and the numbers in
docs/import.md) are the same on every machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from pathlib import Path

import yaml

# Parameter counts of the built-in table, for simulating only (the importers look them up).
SIZES = {"7B": 7615616512, "14B": 14770033664, "32B": 32763876352}


def _chance(eps: float, alpha: float, beta: float, gamma: float, delta: float,
            n: float, length: float, c: float) -> float:  # fmt: skip
    z = eps + alpha * math.log(n) + beta * math.log(length) + gamma * math.log(c) + delta
    return 1.0 / (1.0 + math.exp(-z))


def _variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


# ---- the reference study's pipeline ----------------------------------------------------------

# task -> (task args, metric, offset, answers per sample: IoU and partial credit over 4)
STUDY_TASKS = {
    "qa_quality": ({"dataset_name": "quality"}, "accuracy", 0.0, 1),
    "ruler_niah": ({"num_queries": 4}, "accuracy", 2.0, 4),
    "ruler_vt": ({"num_chains": 8, "num_hops": 4}, "iou", -1.6, 4),
}
STUDY_LENGTHS = (16384, 32768, 65536)
# The study's budgets for C = 5, 10, 20 (its Table 6): Quest token budgets and
# vertical-slash column counts, per length.
QUEST_BUDGETS = {16384: (3280, 1632, 816), 32768: (6560, 3280, 1632), 65536: (13104, 6560, 3280)}
VS_SIZES = {16384: (448, 315, 164), 32768: (704, 448, 290), 65536: (960, 544, 400)}
TARGETS = (5.0, 10.0, 20.0)


def _args(pairs: dict[str, object]) -> str:
    return "+".join(f"{k}@{v}" for k, v in pairs.items()) if pairs else "default"


def _study_file(root: Path, task: str, length: int, model: str, attention: str,
                attn_args: dict[str, object], doc: dict[str, float], samples: int) -> None:  # fmt: skip
    task_args, *_ = STUDY_TASKS[task]
    folder = (root / task / _args({**task_args, "max_input_tokens": length}) / model / attention
              / _args(attn_args))  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"evaluation_results_{samples}.json").write_text(json.dumps(doc, indent=4))


def _study_scores(rng: random.Random, p: float, answers: int, samples: int) -> list[float]:
    return [sum(rng.random() < p for _ in range(answers)) / answers for _ in range(samples)]


def write_study(root: Path, samples: int = 100, seed: int = 0) -> int:
    """The study's results/ tree: 3 models x 3 lengths x 3 tasks x (dense + 2 methods x 3 C)."""
    rng = random.Random(seed)
    count = 0
    for size, n in SIZES.items():
        model = f"qwen_{size.lower()}"
        for length in STUDY_LENGTHS:
            for task, (_, metric, delta, answers) in STUDY_TASKS.items():
                runs: list[tuple[str, dict[str, object], float, float]] = [("dense", {}, 0.0, -1.0)]
                for budget in QUEST_BUDGETS[length]:
                    args = {"token_budget": budget, "page_size": 16, "share_pages": True}
                    runs.append(("quest", args, 1 - budget / length, -0.8))
                for target, size_vs in zip(TARGETS, VS_SIZES[length], strict=True):
                    args = {
                        "vertical_size": size_vs,
                        "slash_size": size_vs,
                        "approximation_size": 256,
                    }
                    # the kernel lands near, not on, the nominal sparsity
                    achieved = 1 - 1 / target + rng.uniform(-0.004, 0.004)
                    runs.append(("vertical_and_slash", args, achieved, -1.0))
                for attention, args, sparsity, gamma in runs:
                    c = 1 / (1 - sparsity)
                    p = _chance(-16.9, 1.31, -1.15, gamma, delta, n, length, c)
                    scores = _study_scores(rng, p, answers, samples)
                    doc = {
                        metric: sum(scores) / samples,
                        f"{metric}_variance": _variance(scores),
                        "total_samples": samples,
                        "average_attention_sparsity": sparsity,
                        "average_output_tokens": round(rng.uniform(8, 40), 2),
                        "max_output_tokens": rng.randint(40, 120),
                    }
                    _study_file(root, task, length, model, attention, args, doc, samples)
                    count += 1
    # An earlier, smaller evaluation of one configuration, which the importer passes over.
    doc = {"accuracy": 0.9, "accuracy_variance": 0.0918, "total_samples": 50,
           "average_attention_sparsity": 0.0}  # fmt: skip
    _study_file(root, "qa_quality", 16384, "qwen_7b", "dense", {}, doc, 50)
    return count + 1


# ---- KVPress evaluation folders ----------------------------------------------------------------

KV_MODELS = {f"Qwen/Qwen2.5-{size}-Instruct": n for size, n in SIZES.items()}
KV_LENGTHS = ("4096", "8192", "16384")
# RULER subtask -> offset; 50 samples each
KV_TASKS = {"niah_single_1": 3.0, "vt": 1.5, "qa_1": 0.0}
KV_PRESSES = {"snapkv": -1.2, "knorm": -1.6}
KV_RATIOS = (0.25, 0.5, 0.75)


def _kv_folder(root: Path, model: str, data_dir: str, press: str, ratio: float) -> Path:
    name = "__".join(["ruler", data_dir, model.replace("/", "--"), press, f"{ratio:.2f}"])
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _kv_config(model: str, data_dir: str, press: str, ratio: float) -> dict[str, object]:
    # the fields and order of KVPress's EvaluationConfig as its save_config writes them
    return {
        "dataset": "ruler", "data_dir": data_dir, "model": model, "device": None,
        "press_name": press, "compression_ratio": ratio, "key_channel_compression_ratio": None,
        "fraction": 1.0, "max_new_tokens": None, "max_context_length": None,
        "query_aware": False, "needle_depth": None, "compression_interval": None,
        "target_size": None, "hidden_states_buffer_size": None, "output_dir": "./results",
        "log_level": "INFO", "model_kwargs": {}, "press_init_command": f"{press}(...)",
        "seed": 42, "fp8": False,
    }  # fmt: skip


def _kv_run(folder: Path, rng: random.Random, n: float, length: int, gamma: float,
            ratio: float, samples: int, config: dict[str, object] | None) -> None:  # fmt: skip
    c = 1 / (1 - ratio)
    metrics: dict[str, dict[str, float]] = {}
    rows = []
    for task, delta in KV_TASKS.items():
        p = _chance(-17.5, 1.1, -0.8, gamma, delta, n, length, c)
        right = [rng.random() < p for _ in range(samples)]
        metrics[task] = {"string_match": round(100 * sum(right) / samples, 2)}
        for i, ok in enumerate(right):
            answer = f"value-{task}-{i}"
            rows.append({
                "question": f"What is the value for {task}, item {i}?",
                "answer": json.dumps([answer]),
                "predicted_answer": f"The answer is,\n{answer}" if ok else "I do not know, sorry",
                "task": task, "max_new_tokens": 64, "answer_prefix": "Answer:",
                "compression_ratio": ratio,
            })  # fmt: skip
    with open(folder / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=4))
    if config is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def write_kvpress(root: Path, samples: int = 50, seed: int = 1) -> int:
    """RULER runs: 3 models x 3 lengths x (no_press + 2 presses x 3 ratios), and two to skip."""
    rng = random.Random(seed)
    count = 0
    for model, n in KV_MODELS.items():
        for data_dir in KV_LENGTHS:
            runs = [("no_press", 0.0, 0.0)]
            runs += [(press, r, g) for press, g in KV_PRESSES.items() for r in KV_RATIOS]
            for press, ratio, gamma in runs:
                folder = _kv_folder(root, model, data_dir, press, ratio)
                config = _kv_config(model, data_dir, press, ratio)
                _kv_run(folder, rng, n, int(data_dir), gamma, ratio, samples, config)
                count += 1
    # A decoding press (its ratio is not what it kept) and a run that never finished.
    model = "Qwen/Qwen2.5-7B-Instruct"
    folder = _kv_folder(root, model, "4096", "decoding_knorm", 0.5)
    _kv_run(folder, rng, SIZES["7B"], 4096, -1.0, 0.5, samples,
            {**_kv_config(model, "4096", "decoding_knorm", 0.5), "target_size": 2048})  # fmt: skip
    folder = _kv_folder(root, model, "8192", "tova", 0.5)
    (folder / "predictions.csv").write_text("task,predicted_answer\nvt,unfinished\n")
    return count + 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write study/ and kvpress/ into")
    out = parser.parse_args().out
    study = write_study(out / "study" / "results")
    kv = write_kvpress(out / "kvpress")
    print(f"wrote {study} study result files under {out / 'study'} and {kv} KVPress run "
          f"folders under {out / 'kvpress'}")  # fmt: skip


if __name__ == "__main__":
    main()
