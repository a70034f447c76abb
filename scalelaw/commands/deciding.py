"""Commands: architectures, cost, frontier, tolerance.

Each command imports the API it calls inside itself, so that `scalelaw --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from scalelaw.commands.common import architectures as _architectures
from scalelaw.commands.common import (
    console,
    err,
    fail,
    fitting_status,
    in_range,
    positive,
    probability,
    warn,
)
from scalelaw.commands.common import emit as _emit
from scalelaw.commands.common import errors as _errors
from scalelaw.commands.common import number as _number
from scalelaw.commands.common import numbers as _numbers
from scalelaw.commands.options import (
    FIGURE_FILES,
    BatchOpt,
    BytesOpt,
    FamilyOpt,
    FigureOutOpt,
    ForceOpt,
    FormatOpt,
    IntervalProbOpt,
    MaxDrawsOpt,
    PhaseOpt,
    QuietOpt,
    SizesOpt,
    new_output,
)
from scalelaw.study import STUDY_COMPRESSIONS_TEXT


def _check_method(method: str | None, phase: str) -> None:
    """An indexing method the cost model knows for the phase (it would otherwise be ignored
    at C = 1 and fail only at larger ratios)."""
    from scalelaw.frontier.cost import DECODE_METHODS, PREFILL_METHODS

    known = PREFILL_METHODS if phase == "prefill" else DECODE_METHODS
    if method is not None and method not in known:
        fail(f"--method: no {phase} cost for '{method}'; choose from {', '.join(known)}")


# --- architectures ---------------------------------------------------------------------------
def architectures(
    family: Annotated[
        str | None,
        typer.Option(help="Show one family (qwen2.5, qwen3, llama3.1, llama3.2, gemma3, smollm2)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Read a Hugging Face config.json instead.")
    ] = None,
    fmt: FormatOpt = "table",
) -> None:
    """List the built-in model shapes used by the cost model, or read one from a config.json.

    Example: scalelaw architectures --family gemma3
    """
    import polars as pl

    from scalelaw.frontier.architectures import from_hf_config, table

    try:
        if config is not None:
            arch = from_hf_config(config)
            frame = pl.DataFrame([arch.as_row()]).drop("extra", strict=False)
        else:
            frame = table(family)
    except _errors() as exc:
        fail(str(exc))
        return
    if fmt == "table":
        frame = frame.select(
            "family", "size", "layers", "hidden", "heads",
            pl.col("kv_heads").alias("kv"), pl.col("head_dim").alias("d_h"), "mlp", "vocab",
            pl.col("window"), pl.col("local_layers").alias("local"),
            (pl.col("params") / 1e9).round(3).alias("params_B"),
            (pl.col("published_params") / 1e9).alias("card_B"),
        )  # fmt: skip
    _emit(frame, fmt, "architectures (params_B: computed from the shapes; card_B: model card)")


# --- cost ------------------------------------------------------------------------------------
CostFamilyOpt = Annotated[
    str,
    typer.Option(help="Built-in family: qwen2.5, qwen3, llama3.1, llama3.2, gemma3, smollm2."),
]
SizeOpt = Annotated[str, typer.Option(help="Model size within the family, e.g. 7B.")]
CostConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="A Hugging Face config.json (overrides --family/--size)."),
]
CostSeqLenOpt = Annotated[
    str, typer.Option("--seq-len", "-L", help="Tokens in context, e.g. 131072 or 128K.")
]
CompressionOpt = Annotated[
    float,
    typer.Option(
        "--compression",
        "-C",
        callback=in_range(1),
        help="Compression ratio C >= 1 (density 1/C).",
    ),
]
CostCausalHalfOpt = Annotated[
    bool,
    typer.Option(
        "--causal-half/--full-square",
        help="Count only the causal half of L^2 (the study counts the full square).",
    ),
]
CostMethodOpt = Annotated[
    str | None,
    typer.Option(
        help="Add this method's indexing cost (block-sparse, vertical-slash, flexprefill, quest)."
    ),
]


def cost(
    family: CostFamilyOpt = "qwen2.5",
    size: SizeOpt = "7B",
    config: CostConfigOpt = None,
    seq_len: CostSeqLenOpt = "131072",
    compression: CompressionOpt = 1.0,
    phase: PhaseOpt = "prefill",
    batch: BatchOpt = 1,
    bytes_per_element: BytesOpt = 2.0,
    causal_half: CostCausalHalfOpt = False,
    method: CostMethodOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    """Break down the cost of one prefill (FLOPs) or one decode step (bytes) and the speed-up bound.

    Example: scalelaw cost --family qwen2.5 --size 7B --seq-len 131072 --compression 10 --phase prefill
    """
    _check_method(method, phase)
    from scalelaw.frontier import cost as cost_of
    from scalelaw.frontier import from_hf_config, get_architecture

    try:
        arch = from_hf_config(config) if config else get_architecture(family, size)
        length = _number(seq_len, "--seq-len", at_least=1)
        b = cost_of(
            arch,
            phase,
            length,
            compression,
            batch=batch,
            bytes_per_element=bytes_per_element,
            causal_half=causal_half,
            method=method,
        )
    except _errors() as exc:
        fail(str(exc))
        return
    frame = b.to_frame()
    summary = {
        "architecture": arch.name,
        "seq_len": length,
        "compression": compression,
        "batch": batch,
        **b.summary(),
    }
    if fmt == "json":
        print(json.dumps({"summary": summary, "parts": frame.to_dicts()}, indent=2))
    elif fmt == "csv":
        sys.stdout.write(frame.write_csv())
    else:
        title = f"{arch.name} {phase}, L={length:,.0f}, batch {batch}"
        _print_cost(b, frame, title, phase, compression, method)


def _print_cost(
    b: Any, frame: Any, title: str, phase: str, compression: float, method: str | None
) -> None:
    """The breakdown by part, then the share of attention and the speed-ups at C and beyond."""
    t = Table("part", f"dense ({b.unit})", f"C={compression:g} ({b.unit})", "share of dense",
              title=title)  # fmt: skip
    for row in frame.iter_rows():
        t.add_row(row[0], f"{row[1]:.4g}", f"{row[2]:.4g}", f"{row[3]:.1%}")
    console.print(t)
    part = "quadratic attention" if phase == "prefill" else "KV-cache reads"
    console.print(
        f"{part}: {b.attention_share:.1%} of the dense cost"
        + (
            f" ({b.attention_block_share:.1%} with the q/k/v/o projections)"
            if phase == "prefill"
            else ""
        )
    )
    console.print(
        f"speed-up at C={compression:g}: {b.speedup:.3g}x"
        + (" (indexing included)" if method else "")
        + f"; bound with free indexing: {b.speedup_bound:.3g}x; "
        f"limit as C grows: {b.speedup_limit:.3g}x"
    )


# --- frontier --------------------------------------------------------------------------------
FrontierSourceArg = Annotated[
    str,
    typer.Argument(
        help="A fit file (.nc), a published law such as sparse-frontier-v1:prefill, or a "
        "data table (.csv, .parquet, .jsonl): the law family is fitted and stacked."
    ),
]
FrontierConfigOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--config",
        metavar="<config.json>",
        help="Hugging Face config.json files to compare instead (repeatable).",
    ),
]
FrontierSeqLenOpt = Annotated[
    str, typer.Option("--seq-len", "-L", help="Length of the frontier table, e.g. 128K.")
]
LengthsOpt = Annotated[
    str, typer.Option(help="Comma-separated lengths scanned for the critical length.")
]
FrontierCompressionsOpt = Annotated[str, typer.Option(help="Comma-separated ratios; 1 is dense.")]
FrontierTaskOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--task",
        metavar="<task>",
        help="Tasks to average (repeatable; default: all of the source's tasks).",
    ),
]
FrontierCausalHalfOpt = Annotated[
    bool, typer.Option("--causal-half/--full-square", help="Count only the causal half of L^2.")
]
FrontierMethodOpt = Annotated[
    str | None,
    typer.Option(help="Add this method's indexing cost; with --cost latency, the method timed."),
]
CostKindOpt = Annotated[
    Literal["flops", "latency"],
    typer.Option(
        "--cost",
        help="flops (FLOPs or bytes from the cost model) or latency (needs --timings).",
    ),
]
FrontierTimingsOpt = Annotated[
    Path | None,
    typer.Option(help="Attention benchmark CSV (method, seq_len, compression, ms)."),
]
DeviceOpt = Annotated[str | None, typer.Option(help="Device rows to use from --timings.")]
FrontierThroughputOpt = Annotated[
    float | None,
    typer.Option(
        callback=positive,
        help="Non-attention rate for --cost latency: FLOP/s (prefill) or byte/s (decode).",
    ),
]
BudgetsOpt = Annotated[int, typer.Option(min=1, help="Number of log-spaced budgets in the table.")]
ShowOpt = Annotated[
    Literal["budgets", "configs"],
    typer.Option(
        help="For table/csv: budgets (best dense vs best sparse per budget) or configs "
        "(every configuration with its score interval and frontier flags)."
    ),
]


def frontier(
    source: FrontierSourceArg,
    family: FamilyOpt = "qwen2.5",
    sizes: SizesOpt = None,
    config: FrontierConfigOpt = None,
    phase: PhaseOpt = "prefill",
    seq_len: FrontierSeqLenOpt = "131072",
    lengths: LengthsOpt = "4K,8K,16K,32K,64K,128K,256K,512K,1024K",
    compressions: FrontierCompressionsOpt = STUDY_COMPRESSIONS_TEXT,
    task: FrontierTaskOpt = None,
    batch: BatchOpt = 1,
    bytes_per_element: BytesOpt = 2.0,
    causal_half: FrontierCausalHalfOpt = False,
    method: FrontierMethodOpt = None,
    cost_kind: CostKindOpt = "flops",
    timings: FrontierTimingsOpt = None,
    device: DeviceOpt = None,
    throughput: FrontierThroughputOpt = None,
    budgets: BudgetsOpt = 12,
    prob: IntervalProbOpt = 0.9,
    max_draws: MaxDrawsOpt = 1000,
    show: ShowOpt = "budgets",
    fmt: FormatOpt = "table",
    out: FigureOutOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """isoCost frontier: best dense vs best sparse per budget, P(sparse wins), critical length.

    For each cost budget, the best dense and the best sparse (size, C) configuration with their
    predicted scores and intervals, and the posterior probability that sparse wins (computed per
    draw, with its Monte Carlo error); then the critical length beyond which larger-sparser
    beats smaller-dense. SOURCE may be a stacked fit (`scalelaw stack`), or a data table, which
    is fitted with the law family (`fit --law auto`) so that P carries the doubt about the
    law's form (progress: fit i of n, ETA; see --quiet). Python: `scalelaw.frontier.decide`.

    Example: scalelaw frontier sparse-frontier-v1:prefill --sizes 7B,14B,32B,72B --seq-len 128K --out frontier.png
    """
    if cost_kind == "flops":
        _check_method(method, phase)
    if out is not None:
        new_output(out, force, FIGURE_FILES)
    from scalelaw.frontier import decide

    try:
        archs = _architectures(family, sizes, config)
        the_cost = _cost_model(
            cost_kind, phase, batch, bytes_per_element, causal_half, method, timings, device,
            throughput,
        )  # fmt: skip
        with fitting_status(source, quiet):
            decision = decide(
                source, archs, the_cost, seq_len=_number(seq_len, "--seq-len", at_least=1),
                lengths=_numbers(lengths, "--lengths", at_least=1),
                compressions=_numbers(compressions, "--compressions", at_least=1),
                tasks=task or None, draws=max_draws, prob=prob, budgets=budgets,
            )  # fmt: skip
        title = f"{source}: {phase}, {decision.score_label}, batch {batch}"
        _report_decision(decision, fmt, show, out, title)
    except _errors() as exc:
        fail(str(exc))


def _cost_model(
    cost_kind: str,
    phase: str,
    batch: int,
    bytes_per_element: float,
    causal_half: bool,
    method: str | None,
    timings: Path | None,
    device: str | None,
    throughput: float | None,
) -> Any:
    """What a budget is spent in: FLOPs or bytes from the cost model, or (--cost latency) the
    times of an attention benchmark."""
    from scalelaw.frontier import FlopsCost, LatencyCost

    if cost_kind == "flops":
        return FlopsCost(phase, batch, bytes_per_element, causal_half, method)
    if timings is None:
        raise ValueError("--cost latency needs --timings FILE")
    if method is None:
        raise ValueError("--cost latency needs --method (the timed sparse method)")
    return LatencyCost.read(
        timings, method, phase, device=device, batch=batch,
        bytes_per_element=bytes_per_element, throughput=throughput,
    )  # fmt: skip


def _report_decision(
    decision: Any, fmt: str, show: str, out: Path | None, figure_title: str
) -> None:
    """The decision as JSON, CSV (budgets or configurations) or tables, its warnings before it,
    and the figure when --out is given."""
    for w in decision.warnings:
        warn(w)
    if fmt == "json":
        print(json.dumps(decision.to_dict(), indent=2))
    elif fmt == "csv":
        sys.stdout.write(decision.to_frame(show).write_csv())
    elif show == "configs":
        title = f"configurations at L={decision.seq_len:,.0f}: {decision.cost_label}"
        _emit(decision.to_frame("configs"), "table", f"{title}, {decision.score_label}")
    else:
        _print_decision(decision)
    if out is not None:
        decision.plot(out, title=figure_title)
        err.print(f"figure written to {out}", highlight=False, markup=False)


def _print_decision(decision: Any) -> None:
    _frontier_table(decision)
    crit = decision.critical
    if crit is None:
        return
    t = Table(
        "length", "sparse - dense (mean over budgets)", f"{decision.prob:.0%} interval",
        "P(sparse better)", title="isoCost advantage of the best sparse choice by length",
    )  # fmt: skip
    marked = False
    for r in crit.by_length.iter_rows(named=True):
        far = decision.extrapolated_length(r["seq_len"])
        marked |= far
        t.add_row(
            f"{r['seq_len'] / 1024:,.0f}K{'*' if far else ''}", f"{r['advantage_mean']:+.3f}",
            f"[{r['advantage_lower']:+.3f}, {r['advantage_upper']:+.3f}]",
            f"{r['p_sparse_better']:.2f}",
        )  # fmt: skip
    if marked:
        t.caption = "* a length outside those the fit saw: extrapolated"
    console.print(t)
    console.print(crit.describe(), highlight=False)


def _frontier_table(decision: Any) -> None:
    """The budget table; a model size or a compression outside those the fit saw is marked
    `*`."""
    front = decision.frontier
    sizes = set(decision.extrapolated_sizes())
    t = Table(
        f"budget: {decision.cost_label}", "best dense", "score [interval]", "best sparse",
        "score [interval]", "sparse - dense", "P(sparse better)",
        title=f"isoCost frontier at L={front.meta['seq_len']:,.0f} ({decision.score_label}, "
        f"{front.n_draws} draw{'s' if front.n_draws > 1 else ''}, "
        f"{front.prob:.0%} intervals)",
    )  # fmt: skip
    marked = {"size": False, "compression": False}
    for r in front.budgets.iter_rows(named=True):

        def cell(tag: str, r: dict[str, Any] = r) -> tuple[str, str]:
            size, ratio = r[f"{tag}_size"], r[f"{tag}_compression"]
            if size is None:
                return "-", "-"
            far_size = size in sizes
            far_ratio = tag == "sparse" and decision.extrapolated_compression(ratio)
            marked["size"] |= far_size
            marked["compression"] |= far_ratio
            return (
                f"{size}{'*' if far_size else ''} C={ratio:g}{'*' if far_ratio else ''}",
                f"{r[f'{tag}_mean']:.3f} [{r[f'{tag}_lower']:.3f}, {r[f'{tag}_upper']:.3f}]",
            )

        diff = (
            "-"
            if r["diff_mean"] is None
            else f"{r['diff_mean']:+.3f} [{r['diff_lower']:+.3f}, {r['diff_upper']:+.3f}]"
        )
        p = (
            "-"
            if r["p_sparse_better"] is None
            else f"{r['p_sparse_better']:.2f}"
            + ("" if r["p_mc_error"] is None else f" ± {r['p_mc_error']:.2f}")
        )
        t.add_row(f"{r['budget']:.3g}", *cell("dense"), *cell("sparse"), diff, p)
    what = " or ".join(
        {"size": "model size", "compression": "compression"}[k] for k, v in marked.items() if v
    )
    if what:
        t.caption = f"* a {what} outside those the fit saw: extrapolated"
    console.print(t)


# --- tolerance -------------------------------------------------------------------------------
ToleranceDataArg = Annotated[
    str,
    typer.Argument(help="An accuracy-point table (CSV, Parquet, JSON Lines) or measured:NAME."),
]
MarginOpt = Annotated[
    float,
    typer.Option(
        callback=in_range(0, 1, high_open=True),
        help="Largest tolerated loss against dense, in score units.",
    ),
]
AlphaOpt = Annotated[
    float,
    typer.Option(callback=probability, help="Error rate of the whole fixed-sequence procedure."),
]
ToleranceWhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where", metavar="<column=value>", help="Keep rows with COLUMN=VALUE (repeatable)."
    ),
]
SummaryOpt = Annotated[
    bool,
    typer.Option(
        "--summary/--detail",
        help="Print the spread over tasks per model, phase and length, or every row.",
    ),
]


def tolerance(
    data: ToleranceDataArg,
    margin: MarginOpt = 0.05,
    alpha: AlphaOpt = 0.05,
    where: ToleranceWhereOpt = None,
    summary: SummaryOpt = True,
    fmt: FormatOpt = "table",
    out: FigureOutOpt = None,
    force: ForceOpt = False,
) -> None:
    """Largest tolerable compression per (model, length, method, task), error rate controlled.

    One-sided non-inferiority tests over increasing C in a fixed sequence (Learn-then-Test
    style): a ratio is tolerable when its loss against dense is shown to be under --margin.

    Example: scalelaw tolerance results.csv --margin 0.05 --alpha 0.05 --out tolerance.png
    """
    if out is not None:
        new_output(out, force, FIGURE_FILES)
    from scalelaw.data import load_table
    from scalelaw.frontier import tolerance_summary, tolerance_table

    try:
        frame = load_table(data, where=where or None)
        result = tolerance_table(frame, margin=margin, alpha=alpha, source=data)
    except _errors() as exc:
        fail(str(exc))
        return
    shown = tolerance_summary(result) if summary else result
    if fmt == "table" and not summary:
        shown = shown.drop("margin", "alpha", "test", "levels_tested").rename(
            {
                "max_tolerable_compression": "max_C",
                "dense_score": "dense",
                "score_at_max": "at_max_C",
            }
        )
    title = (
        f"max tolerable compression (loss < {margin:g} vs dense, error rate <= {alpha:g}, "
        f"{result['test'][0]} test)"
    )
    _emit(shown, fmt, title)
    if out is not None:
        from scalelaw.frontier.figures import tolerance_figure

        tolerance_figure(result, out)
        err.print(f"figure written to {out}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add this group's commands to `app`."""
    app.command()(architectures)
    app.command()(cost)
    app.command()(frontier)
    app.command()(tolerance)
