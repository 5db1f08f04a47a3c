"""``minidit.train`` with one fault planted, for the torchrun tests (tests/test_distributed.py).

    FAULT=data  rank 1 cannot read its third batch (an I/O error on an image file)
    FAULT=disk  the disk fills up while rank 0 writes the step-4 checkpoint
    FAULT=hang  rank 1 stops answering at its third batch (stuck, not dead)

Run with torchrun like the trainer: ``torchrun ... tests/faulty_train.py <trainer flags>``.
"""
import errno
import os
import sys
import time

import torch

from minidit.training import loader

FAULT, RANK = os.environ.get("FAULT", ""), int(os.environ.get("RANK", "0"))
real_batches, real_save = loader.TrainLoader.batches, torch.save


def batches(self, start_step):
    for i, batch in enumerate(real_batches(self, start_step)):
        if FAULT == "data" and RANK == 1 and i == 2:
            raise OSError(errno.EIO, "Input/output error", "data/broken.png")
        if FAULT == "hang" and RANK == 1 and i == 2:
            time.sleep(3600)
        yield batch


def save(obj, f, *args, **kwargs):
    if FAULT == "disk" and isinstance(obj, dict) and obj.get("step") == 4:
        f.write(b"the first bytes of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(obj, f, *args, **kwargs)


loader.TrainLoader.batches, torch.save = batches, save
from minidit.train import cli  # noqa: E402  (after the faults are planted)

sys.argv[0] = "minidit.train"
cli()
