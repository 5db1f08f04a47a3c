"""The pieces of the trainer (``python -m minidit.train``, the loop, lives in minidit/train.py).

Reading order: ``presets`` (the recipes) -> ``config`` (``TrainConfig``: defaults, presets and
flags combined) -> ``distributed`` (torchrun, batch split, seeds) -> ``objective`` (timesteps and
the loss) -> ``optim`` (AdamW and the lr schedule) -> ``ema`` -> ``step`` (one training step) ->
``loader`` (the batches, resumable mid-epoch) -> ``checkpoint`` (atomic save, exact resume) ->
``logger`` (run folder, log, losses, throughput) -> ``plots`` (sample grid, loss curve) ->
``setup`` (every check and build before step 1) -> ``state`` (the run: start, resume, save).
"""
from .checkpoint import atomic_save, find_latest, load_checkpoint
from .config import DEFAULTS, TrainConfig, build_parser, preset_config, resolve
from .distributed import rank_seed, split_global_batch
from .ema import create_ema, update_ema
from .objective import diffusion_loss, sample_timesteps
from .optim import create_optimizer, lr_at_step
from .presets import DEFAULT_PRESET, PRESETS
from .step import train_step

__all__ = ["PRESETS", "DEFAULT_PRESET", "DEFAULTS", "TrainConfig", "build_parser", "preset_config", "resolve",
           "split_global_batch", "rank_seed", "sample_timesteps", "diffusion_loss", "create_optimizer",
           "lr_at_step", "update_ema", "create_ema", "train_step", "atomic_save", "load_checkpoint", "find_latest"]
