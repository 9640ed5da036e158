"""Training a JSAE pair (or a plain pair) around one block's MLP: see :mod:`jsae.train.trainer`.

``config`` (settings and result), ``data`` (tokens and the activation stream), ``saes`` (the
pair's initialisation), ``losses`` (the loss, term by term), ``metrics`` (variances, dead
features, running means), ``checkpoint`` (the run's state on disk), ``trainer`` (the loop).
"""

from jsae.train.checkpoint import (
    CHECKPOINT_PREFIX,
    CHECKPOINT_SUFFIX,
    RESUMABLE_CHANGES,
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from jsae.train.config import PairTrainingConfig, TrainResult
from jsae.train.data import ActivationStream, chunk_token_ids, tokenize_documents
from jsae.train.losses import PairLoss, aux_k_loss, decode_topk, pair_loss
from jsae.train.metrics import FiringTracker, explained_variance, total_variance
from jsae.train.saes import new_pair, normalize_decoder
from jsae.train.trainer import PairTrainer, train_pair

__all__ = [
    "CHECKPOINT_PREFIX",
    "CHECKPOINT_SUFFIX",
    "RESUMABLE_CHANGES",
    "ActivationStream",
    "FiringTracker",
    "PairLoss",
    "PairTrainer",
    "PairTrainingConfig",
    "TrainResult",
    "TrainState",
    "aux_k_loss",
    "chunk_token_ids",
    "decode_topk",
    "explained_variance",
    "latest_checkpoint",
    "load_checkpoint",
    "new_pair",
    "normalize_decoder",
    "pair_loss",
    "save_checkpoint",
    "tokenize_documents",
    "total_variance",
    "train_pair",
]
