"""``jsae info``: a source's model shape and, per pair kind and layer, its SAEs' widths and k."""

from __future__ import annotations

import argparse

from jsae.cli.options import add_refresh_argument
from jsae.loading import DEMO_SOURCE, load_source


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    info = sub.add_parser(name, help="list a source's layers and pair kinds")
    info.add_argument("--source", default=DEMO_SOURCE)
    info.add_argument("--model")
    add_refresh_argument(info)


def cmd_info(args: argparse.Namespace) -> int:
    source = load_source(args.source, model=args.model, refresh=args.refresh)
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
