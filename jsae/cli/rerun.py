"""``jsae ablate --from FILE``: the settings a written table records (``jsae.provenance``)
filled into the command's arguments, and the defaults when no file is given.

A flag given on the command line wins over the file, so ``--from run.parquet --eps 0.05``
re-runs the same prompt at another ε. The flags a file can fill default to None in the
parser; ``resolve_settings`` puts the real defaults in when neither says otherwise.
"""

from __future__ import annotations

import argparse
import sys

from jsae.errors import InputError
from jsae.loading import DEMO_SOURCE
from jsae.provenance import read_provenance
from jsae.sampler import PairSampler
from jsae.table import DEFAULT_EPS


def resolve_settings(args: argparse.Namespace) -> None:
    """Fill ``args`` from ``--from``'s provenance where a flag was not given, then the
    defaults: source ``demo``, ε ``DEFAULT_EPS``, every connection (``--pairs all``), BOS
    left out (the pair kind stays None unless the file names it: the command picks the
    source's first kind). Sets
    ``args.prompt_value`` (the recorded prompt, else None) and ``args.max_prompt_tokens``."""
    args.prompt_value, args.max_prompt_tokens = None, None
    if getattr(args, "from_file", None) is not None:
        found = read_provenance(args.from_file)
        if isinstance(found.prompt, list) and not all(isinstance(v, int) for v in found.prompt):
            raise InputError(
                f"{args.from_file} holds {len(found.prompt)} prompts (a batch); --from re-runs "
                "one prompt. Re-run a batch with jsae.ablate in Python."
            )
        filled = {
            "source": found.source,
            "model": found.model,
            "layer": found.layer,
            "pair": found.kind,
            "eps": found.eps,
            "include_bos": found.include_bos,
            "max_tokens": found.max_ablated,
        }
        sampler = PairSampler.of(found)
        filled |= {"pairs": sampler.how, "seed": sampler.seed}
        for name, value in filled.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        if args.mode is None and args.scale is None:
            args.mode = found.mode
            args.scale = found.step if found.mode == "scale" else None
        args.prompt_value, args.max_prompt_tokens = found.prompt, found.max_prompt_tokens
        print(
            f"re-running {args.from_file} (written by jsae {found.jsae_version}; prompt "
            f"sha256 {found.prompt_sha256[:12]})",
            file=sys.stderr,
        )
    defaults = {"source": DEMO_SOURCE, "eps": DEFAULT_EPS}
    defaults |= {"pairs": PairSampler.how, "seed": PairSampler.seed}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.include_bos = bool(args.include_bos)
