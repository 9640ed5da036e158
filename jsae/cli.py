"""The ``jsae`` command line: ``jsae ablate``, ``jsae info``, ``jsae train-demo``.

Errors a user can cause print one line (``error: ...``) and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jsae.errors import InputError, JSAEError

OUTPUT_FORMATS = (".parquet", ".csv")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jsae",
        description="Test whether JSAE Jacobian sparsity reflects causal sparsity in an MLP.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ab = sub.add_parser(
        "ablate",
        help="run both causal-sparsity experiments on a prompt",
        description="Perturb every active input feature of every token along its decoder "
        "direction, rerun the MLP and the output SAE (top-k included), and compare how much "
        "important (|J| > eps) and unimportant (|J| <= eps) connections moved.",
    )
    ab.add_argument(
        "--source",
        default="demo",
        help="'demo' (bundled default), a local folder, or a W&B artifact "
        "entity/project/name:version (default: demo)",
    )
    ab.add_argument("--model", help="model for a pair folder: TransformerLens name or folder")
    ab.add_argument(
        "--layer", type=int, help="block whose MLP to test (default: first with a pair)"
    )
    prompt = ab.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="the text to analyse")
    prompt.add_argument("--prompt-file", type=Path, help="a UTF-8 text file to analyse")
    ab.add_argument("--eps", type=float, default=0.01, help="|J| threshold (default: 0.01)")
    ab.add_argument(
        "--mode",
        choices=("unit", "zero", "scale"),
        help="perturbation size s: unit (s=1, the notebook's), zero (s=a_i, removes the "
        "feature), scale (s=--scale). Default: unit, or scale when --scale is given",
    )
    ab.add_argument("--scale", type=float, help="perturbation size s (implies --mode scale)")
    ab.add_argument(
        "--pair", choices=("jsae", "plain"), default="jsae", help="which pair (default: jsae)"
    )
    ab.add_argument("--include-bos", action="store_true", help="also ablate the BOS position")
    ab.add_argument(
        "--memory-budget-mb",
        type=float,
        default=1024,
        help="working memory per chunk of tokens, MiB (default: 1024)",
    )
    ab.add_argument("--atol", type=float, default=0.01, help="tolerance vs −s·J (absolute)")
    ab.add_argument("--rtol", type=float, default=0.1, help="tolerance vs −s·J (relative)")
    ab.add_argument("--output", type=Path, help="write every connection to .parquet or .csv")
    ab.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    ab.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    info = sub.add_parser("info", help="list a source's layers and pair kinds")
    info.add_argument("--source", default="demo")
    info.add_argument("--model")

    demo = sub.add_parser("train-demo", help="rebuild the bundled default from scratch")
    demo.add_argument("--output", type=Path, required=True, help="folder to write the bundle to")
    demo.add_argument("--quick", action="store_true", help="a tiny, fast build (for tests)")
    demo.add_argument("--seed", type=int, default=0)
    return parser


def resolve_mode(mode: str | None, scale: float | None) -> tuple[str, float]:
    if scale is None:
        if mode == "scale":
            raise InputError("--mode scale needs --scale S (the perturbation size).")
        return mode or "unit", 1.0
    if mode not in (None, "scale"):
        raise InputError(
            f"--scale sets the perturbation size itself; drop --mode {mode} or drop --scale."
        )
    return "scale", scale


def read_prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return args.prompt
    try:
        return args.prompt_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"Prompt file {args.prompt_file} does not exist.") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise InputError(f"Prompt file {args.prompt_file} cannot be read as text: {err}") from None


def check_output(path: Path | None) -> None:
    if path is not None and path.suffix.lower() not in OUTPUT_FORMATS:
        raise InputError(
            f"--output must end in .parquet or .csv, got {path.name!r}; "
            "the extension picks the format."
        )


def cmd_ablate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from jsae.ablation import AblationConfig, ablate, check_eps
    from jsae.loading import load_source
    from jsae.stats import Tolerance, format_summary, importance_ratio, summarize

    eps = check_eps(args.eps)
    mode, scale = resolve_mode(args.mode, args.scale)
    if not args.memory_budget_mb > 0:
        raise InputError("--memory-budget-mb must be a positive number.")
    config = AblationConfig(
        mode=mode,
        scale=scale,
        include_bos=args.include_bos,
        memory_budget=int(args.memory_budget_mb * 2**20),
    )
    tolerance = Tolerance(atol=args.atol, rtol=args.rtol)
    check_output(args.output)
    text = read_prompt(args)
    source = load_source(args.source, model=args.model, device=args.device)
    layer = args.layer if args.layer is not None else source.layers(args.pair)[0]
    pair = source.pair(layer, args.pair)

    bar = tqdm(total=0, unit="tok", desc="ablating", disable=args.no_progress, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        result = ablate(source.model, pair, text, eps=eps, config=config, progress=progress)
    finally:
        bar.close()
    if result.prompt.notice:
        print(f"note: {result.prompt.notice}", file=sys.stderr)
    summary = summarize(result.table, tolerance)
    s_text = {"unit": "s = 1", "zero": "s = a_i", "scale": f"s = {scale:g}"}[mode]
    print(
        f"source {args.source} · layer {layer} · {args.pair} pair · mode {mode} ({s_text}) · "
        f"ε = {eps:g}\n{result.n_tokens} tokens ablated, {len(result.table):,} connections "
        f"(k_out {pair.k_out} × k_in {pair.k_in} per token)\n"
    )
    print(format_summary(summary))
    ratio = importance_ratio(summary)
    print(f"\nmean |diff| important / unimportant: {ratio:.3g}")
    print(f"within tolerance: |diff − (−s·J)| <= {tolerance.atol:g} + {tolerance.rtol:g}·|s·J|")
    if args.output is not None:
        write_table(result.table, args.output)
        print(f"wrote {len(result.table):,} connections to {args.output}")
    return 0


def write_table(table, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            table.to_csv(path, index=False)
        else:
            table.to_parquet(path, index=False)
    except OSError as err:
        raise InputError(f"Could not write {path}: {err.strerror or err}.") from None


def cmd_info(args: argparse.Namespace) -> int:
    from jsae.loading import load_source

    source = load_source(args.source, model=args.model)
    cfg = source.model.cfg
    print(
        f"{args.source}: {cfg.n_layers} layers, d_model {cfg.d_model}, d_mlp {cfg.d_mlp}, "
        f"act_fn {cfg.act_fn}, context {cfg.n_ctx}"
    )
    for kind in source.kinds:
        for layer in source.layers(kind):
            pair = source.pair(layer, kind)
            print(
                f"  {kind:5s} layer {layer}: d_sae {pair.d_sae_in}/{pair.d_sae_out}, "
                f"k {pair.k_in}/{pair.k_out}"
            )
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    from jsae.demo import build_demo

    build_demo(args.output, quick=args.quick, seed=args.seed)
    print(f"wrote the bundle to {args.output}")
    return 0


COMMANDS = {"ablate": cmd_ablate, "info": cmd_info, "train-demo": cmd_train_demo}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except JSAEError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
