"""Loading models and JSAE pairs: one ``load_source`` for the CLI and the app.

A *source* is one of

* ``"demo"``: the bundled default in ``jsae/assets/demo`` (offline);
* ``"planted"``: the planted ground truth, built from its seed (``jsae.planted``);
* a W&B artifact path ``entity/project/name:version``: downloaded with the wandb API into a
  local cache folder, then read as a folder (``wandb_artifact``);
* a local folder, which is either
  - a *source folder* with ``source.json`` naming a model and pair folders per kind and layer
    (the bundled default is one; ``source``),
  - a *research pair folder* (``cfg.json`` + ``sae_weights.safetensors`` with ``_W_enc`` ...
    and ``_W_enc_out`` ... keys, the research code's format; ``research``), or
  - a *sae-lens pair folder* (``pair.json`` + ``in/`` and ``out/`` sae-lens SAE folders;
    ``sae_lens_pair``).

Models load by TransformerLens name or from a *model folder* (``model``). Every format reads
its JSON and safetensors files through ``files``, so a missing or corrupt file is one
``SourceError`` naming it.
"""

from jsae.loading.model import (
    MODEL_CONFIG,
    MODEL_WEIGHTS,
    load_model,
    load_model_folder,
    save_model_folder,
)
from jsae.loading.research import (
    RESEARCH_CFG,
    RESEARCH_KEYS,
    RESEARCH_WEIGHTS,
    load_randomized_weights,
    load_research_pair,
    save_research_pair,
)
from jsae.loading.sae_lens_pair import (
    SAE_LENS_PAIR_MANIFEST,
    load_sae_lens_pair,
    save_sae_lens_pair,
)
from jsae.loading.source import (
    BUILTIN_SOURCES,
    DEMO_DIR,
    DEMO_SOURCE,
    PLANTED_SOURCE,
    SOURCE_MANIFEST,
    Source,
    load_folder,
    load_pair_folder,
    load_planted,
    load_source,
    save_source,
)
from jsae.loading.wandb_artifact import WANDB_ARTIFACT, download_wandb_artifact

__all__ = [
    "BUILTIN_SOURCES",
    "DEMO_DIR",
    "DEMO_SOURCE",
    "MODEL_CONFIG",
    "MODEL_WEIGHTS",
    "PLANTED_SOURCE",
    "RESEARCH_CFG",
    "RESEARCH_KEYS",
    "RESEARCH_WEIGHTS",
    "SAE_LENS_PAIR_MANIFEST",
    "SOURCE_MANIFEST",
    "WANDB_ARTIFACT",
    "Source",
    "download_wandb_artifact",
    "load_folder",
    "load_model",
    "load_model_folder",
    "load_pair_folder",
    "load_planted",
    "load_randomized_weights",
    "load_research_pair",
    "load_sae_lens_pair",
    "load_source",
    "save_model_folder",
    "save_research_pair",
    "save_sae_lens_pair",
    "save_source",
]
