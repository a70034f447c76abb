"""Commands: kernels list, kernels check (sparse attention methods and their self-checks).

Each command imports the API it calls (and torch) inside itself, so that `scalelaw --help` stays fast.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from scalelaw.commands.common import console, fail
from scalelaw.kernels.specs import BUDGET_RULES, KernelInputError, get_spec, method_names
from scalelaw.study import STUDY_LEVELS

Format = Literal["table", "json"]
FormatOpt = Annotated[Format, typer.Option("--format", help="table or json.")]
# the former spelling of --format json, kept so scripts that use it still work
JsonOpt = Annotated[bool, typer.Option("--json", hidden=True, help="Same as --format json.")]

kernels_app = typer.Typer(
    name="kernels",
    help="Sparse attention methods: list them with their knobs, check them against dense.",
    no_args_is_help=True,
)


@kernels_app.command("list")
def list_cmd(
    phase: Annotated[
        str | None, typer.Option(help="Only methods with this phase: prefill or decode.")
    ] = None,
    seq_len: Annotated[
        int, typer.Option(help="Length at which to state the reachable range of C.")
    ] = 16384,
    fmt: FormatOpt = "table",
    as_json: JsonOpt = False,
) -> None:
    """List the methods: phases, knobs (our default and the study's value), how C sets the
    budget, and the range of C each reaches at --seq-len. `--format json` gives the specs, with
    every knob's default, study value, help and range under `knob_specs`.

    Example: scalelaw kernels list --phase decode --seq-len 4096
    """
    try:
        info = _method_info(phase, seq_len)
    except KernelInputError as e:
        fail(str(e))
    if as_json or fmt == "json":
        print(json.dumps(info, indent=2))
        return
    console.print(_methods_table(info, seq_len))


def _method_info(phase: str | None, seq_len: int) -> list[dict[str, Any]]:
    """Every method's spec at `seq_len`, JSON-ready (what `kernels list --format json` prints)."""
    names = method_names(phase)
    if seq_len < 1:
        raise KernelInputError(f"--seq-len must be >= 1, got {seq_len}")
    info: list[dict[str, Any]] = []
    for name in names:
        spec = get_spec(name)
        info.append(
            {
                "method": name,
                "phases": list(spec.phases),
                "knobs": spec.defaults(),
                "study": spec.study_values(),
                "knob_help": spec.knob_help(),
                "knob_specs": spec.knob_table(),
                "description": spec.description,
                "budget": spec.budget_rule,
                "seq_len": seq_len,
                "reachable": list(spec.reachable(seq_len)),
                "study_levels": list(STUDY_LEVELS.get(name, ())),
            }
        )
    return info


def _methods_table(info: list[dict[str, Any]], seq_len: int) -> Table:
    table = Table(show_lines=True)
    for col in ("method", "phases", "knobs: default (study)", "how C sets the budget", "C reach"):
        table.add_column(col, overflow="fold")
    for row in info:
        knobs = (
            ", ".join(
                f"{k}={_show(k, v)}"
                + ("" if row["study"][k] == v else f" ({_show(k, row['study'][k])})")
                for k, v in row["knobs"].items()
            )
            or "-"
        )
        c_min, c_max = row["reachable"]
        levels = ", ".join(f"{c:g}" for c in row["study_levels"])
        table.add_row(
            row["method"],
            "/".join(row["phases"]),
            knobs,
            row["budget"],
            f"{c_min:g}-{c_max:.3g} at L={seq_len}"
            + (f"; the study's levels: {levels}" if levels else ""),
        )
    return table


def _show(knob: str, value: Any) -> str:
    """A knob's value; unset ones by what stands in for them."""
    if value is None:
        return "prompt-length" if knob == "budget_length" else "from-C"
    return str(value)


def _check_rows(
    length: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    compressions: list[float],
    backend: str,
    seed: int,
    budget_rule: str = "study",
) -> list[dict[str, Any]]:
    from scalelaw.kernels import get_method, list_methods

    x = _random_inputs(length, heads, kv_heads, head_dim, backend, seed)
    want = _dense_outputs(x)
    rows = []
    for phase in ("prefill", "decode"):
        for name in list_methods(phase):
            if name == "dense":
                continue
            rule = (
                {"budget_rule": budget_rule} if "budget_rule" in get_spec(name).defaults() else {}
            )
            m = get_method(name, **rule)
            for c in compressions:
                if phase == "prefill":
                    res = m.prefill(x["q"], x["k"], x["v"], compression=c, backend=backend)
                else:
                    st = m.prepare_cache(x["q"], x["k"], x["v"], compression=c)
                    st.append(x["k_new"], x["v_new"])
                    res = m.decode(x["q_step"], st, backend=backend)
                rows.append(_check_row(phase, name, c, res, want[phase]))
    return rows


def _random_inputs(
    length: int, heads: int, kv_heads: int, head_dim: int, backend: str, seed: int
) -> dict[str, Any]:
    """Seeded q, k, v of a prompt, and one appended token's k, v and query."""
    import torch

    g = torch.Generator().manual_seed(seed)
    device = torch.device("cuda" if backend != "torch" and torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    shapes = {
        "q": (heads, length),
        "k": (kv_heads, length),
        "v": (kv_heads, length),
        "k_new": (kv_heads, 1),
        "v_new": (kv_heads, 1),
        "q_step": (heads, 1),
    }
    # drawn in this order so the inputs stay those of every earlier release
    return {
        name: torch.randn(1, h, n, head_dim, generator=g).to(device, dtype)
        for name, (h, n) in shapes.items()
    }


def _dense_outputs(x: dict[str, Any]) -> dict[str, Any]:
    from scalelaw.kernels import get_method

    dense = get_method("dense", phase="decode")
    state = dense.prepare_cache(x["q"], x["k"], x["v"])
    state.append(x["k_new"], x["v_new"])
    return {
        "prefill": get_method("dense").prefill(x["q"], x["k"], x["v"]).out.float(),
        "decode": dense.decode(x["q_step"], state).out.float(),
    }


def _check_row(phase: str, name: str, c: float, res: Any, want: Any) -> dict[str, Any]:
    diff = (res.out.float() - want).abs().max().item()
    rel = ((res.out.float() - want).norm() / want.norm()).item()
    return {
        "phase": phase,
        "method": name,
        "compression": c,
        "achieved": res.achieved_compression,
        "study_counted": res.study_counted,
        "reached": res.reached,
        "max_abs_diff_vs_dense": diff,
        "rel_error_vs_dense": rel,
        "note": res.note,
    }


@kernels_app.command("check")
def check_cmd(
    length: Annotated[int, typer.Option(help="Sequence length of the random inputs.")] = 2048,
    heads: Annotated[int, typer.Option(help="Query heads.")] = 4,
    kv_heads: Annotated[int, typer.Option(help="KV heads (GQA when fewer than heads).")] = 2,
    head_dim: Annotated[int, typer.Option(help="Head dimension.")] = 64,
    compression: Annotated[
        str, typer.Option(help="Comma-separated compression ratios; 1 must match dense.")
    ] = "1,5,10",
    backend: Annotated[
        str, typer.Option(help="torch, triton or auto (triton on a CUDA GPU).")
    ] = "torch",
    seed: Annotated[int, typer.Option(help="Seed of the random inputs.")] = 0,
    budget_rule: Annotated[
        str,
        typer.Option(
            help="vertical-slash and flexprefill budgets: 'study' (the study's table per length "
            "and level; C is what results) or 'exact' (solved to hit C)."
        ),
    ] = "study",
    fmt: FormatOpt = "table",
    as_json: JsonOpt = False,
) -> None:
    """Run every method on random inputs and compare it with dense attention.

    At C = 1 every method must reproduce dense attention (exit 1 otherwise); at larger C the
    table shows the compression achieved (token by token, and as the study counts it: block
    pairs, the prompt over the budget) and how far the output moved from dense.

    Example: scalelaw kernels check --length 1024 --compression 1,4 --budget-rule exact
    """
    cs = _check_options(budget_rule, compression, length, heads, kv_heads, head_dim)
    if backend == "triton":
        import torch

        if not torch.cuda.is_available():
            # Triton kernels then run in the interpreter on the CPU (slow: keep --length small).
            os.environ.setdefault("TRITON_INTERPRET", "1")
    try:
        rows = _check_rows(length, heads, kv_heads, head_dim, cs, backend, seed, budget_rule)
    except KernelInputError as e:
        fail(str(e))
    bad = [r for r in rows if r["compression"] == 1 and r["max_abs_diff_vs_dense"] > 1e-2]
    if as_json or fmt == "json":
        print(json.dumps(rows, indent=2))
    else:
        console.print(_check_table(rows))
    if bad:
        names = ", ".join(f"{r['method']} ({r['phase']})" for r in bad)
        fail(f"C = 1 differs from dense attention for: {names}", code=1)


def _check_options(
    budget_rule: str, compression: str, length: int, heads: int, kv_heads: int, head_dim: int
) -> list[float]:
    """The ratios of `kernels check`, after refusing options it cannot run with."""
    if budget_rule not in BUDGET_RULES:
        fail(f"--budget-rule: expected one of {', '.join(BUDGET_RULES)}, got '{budget_rule}'")
    try:
        cs = [float(t) for t in compression.split(",") if t.strip()]
    except ValueError:
        fail(f"--compression: expected comma-separated numbers, got '{compression}'")
    if not cs:
        fail("--compression: no values")
    for name, value in (("--length", length), ("--heads", heads), ("--kv-heads", kv_heads)):
        if value < 1:
            fail(f"{name} must be >= 1, got {value}")
    if head_dim < 16:
        fail(f"--head-dim must be >= 16, got {head_dim}")
    # the dense reference holds a (heads, L, L) score matrix in float32: refuse what cannot fit
    # rather than let the allocator fail mid-run
    need = 4.0 * heads * length * length
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have / 2:
        fail(
            f"--length {length}: the dense reference needs about {need / 2**30:.3g} GiB for "
            f"{heads} heads, more than half of this machine's {have / 2**30:.3g} GiB; "
            "use a smaller --length or fewer --heads"
        )
    return cs


def _check_table(rows: list[dict[str, Any]]) -> Table:
    table = Table()
    cols = ("phase", "method", "C", "achieved", "study's count", "max |diff|", "rel. error")
    for col in (*cols, "note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["phase"],
            r["method"],
            f"{r['compression']:g}",
            f"{r['achieved']:.3f}",
            f"{r['study_counted']:.3f}",
            f"{r['max_abs_diff_vs_dense']:.2e}",
            f"{r['rel_error_vs_dense']:.3f}",
            r["note"] or ("" if r["reached"] else "not reached"),
        )
    return table


def register(app: typer.Typer) -> None:
    """Add this group's commands to `app`."""
    app.add_typer(kernels_app, name="kernels")
