"""The training system behind ``python -m minidit.train``, one concept per module.

Reading order: ``presets`` (the recipes) -> ``config`` (flags over presets) -> ``distributed``
(torchrun, batch split, seeds) -> ``objective`` (timesteps and the loss) -> ``optim`` (AdamW and
the lr schedule) -> ``ema`` -> ``checkpoint`` (atomic save, exact resume) -> ``logger`` (run folder,
log, throughput/MFU) -> ``plots`` (sample grid, loss curve) -> ``setup`` (every check and build
before step 1, the sample grids). The loop itself is minidit/train.py.
"""
from .checkpoint import atomic_save, find_latest, load_checkpoint
from .config import DEFAULTS, build_parser, resolve
from .distributed import rank_seed, split_global_batch
from .ema import create_ema, update_ema
from .objective import diffusion_loss, sample_timesteps
from .optim import create_optimizer, lr_at_step
from .presets import DEFAULT_PRESET, PRESETS

__all__ = ["PRESETS", "DEFAULT_PRESET", "DEFAULTS", "build_parser", "resolve", "split_global_batch",
           "rank_seed", "sample_timesteps", "diffusion_loss", "create_optimizer", "lr_at_step",
           "update_ema", "create_ema", "atomic_save", "load_checkpoint", "find_latest"]
