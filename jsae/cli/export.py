"""``jsae export-sae-lens``: one pair of a source as two sae-lens SAE folders, ``DIR/in`` and
``DIR/out``, that ``sae_lens.SAE.load_from_disk`` opens (with ``pair.json`` beside them, so
that jsae reads the folder back as the same pair)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jsae.cli.options import add_refresh_argument, check_writable
from jsae.errors import InputError
from jsae.loading import DEMO_SOURCE, load_source, save_sae_lens_pair
from jsae.loading.sae_lens_pair import SIDES
from jsae.pair import DEFAULT_KIND, PAIR_KINDS, is_randomized


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    ex = sub.add_parser(
        name,
        help="write one pair as two sae-lens SAE folders (DIR/in, DIR/out)",
        description="Write a source's pair as sae-lens TopK SAE folders: DIR/in reads the MLP "
        "input (blocks.L.ln2.hook_normalized), DIR/out the MLP output (blocks.L.hook_mlp_out); "
        "each opens with sae_lens.SAE.load_from_disk, and `jsae ablate --source DIR` reads "
        "them back.",
    )
    ex.add_argument("--source", default=DEMO_SOURCE, help=f"as for ablate (default: {DEMO_SOURCE})")
    ex.add_argument("--model", help="model for a pair folder: TransformerLens name or folder")
    add_refresh_argument(ex)
    ex.add_argument("--layer", type=int, help="the pair's block (default: first with a pair)")
    ex.add_argument(
        "--pair",
        default=DEFAULT_KIND,
        help=f"the pair's kind: the paper's {', '.join(PAIR_KINDS)} or one the source declares "
        f"(`jsae info` lists them; default: {DEFAULT_KIND})",
    )
    ex.add_argument("--output", type=Path, required=True, help="the folder to write")
    ex.add_argument(
        "--model-name",
        help="the model the SAEs' metadata name (default: the source's model, as a "
        "TransformerLens name or a model folder's absolute path)",
    )


def cmd_export_sae_lens(args: argparse.Namespace) -> int:
    out: Path = args.output.expanduser()
    taken = [side for side in SIDES if (out / side).exists()]
    if taken:
        raise InputError(f"{out / taken[0]} already exists; name a new --output folder.")
    check_writable(out, "--output", folder=True)
    source = load_source(args.source, model=args.model, refresh=args.refresh)
    # a kind with no pairs falls through to source.pair's error, which lists the kinds
    layer = args.layer if args.layer is not None else (source.layers(args.pair) or [0])[0]
    pair = source.pair(layer, args.pair)
    model_name = args.model_name
    if model_name is None and not is_randomized(args.pair):
        model_name = source.model_ref
    if model_name is None:
        print(
            "note: no model recorded in the SAEs' metadata (the pair's model has no name or "
            "folder to record: a randomized-LLM control's, or one built in memory); pass "
            "--model-name to name one.",
            file=sys.stderr,
        )
    save_sae_lens_pair(pair, out, model_name=model_name)
    print(
        f"wrote {out / SIDES[0]} ({pair.hook_in}) and {out / SIDES[1]} ({pair.hook_out}), "
        f"{pair.kind} pair of layer {layer}, model {model_name or '(none)'}: open each with "
        "sae_lens.SAE.load_from_disk"
    )
    return 0
