"""Small offline classifiers that stand in for Inception on minidit's offline data sets.

FID on ImageNet uses the features of an Inception-v3 trained on ImageNet. For 8x8 digits or
32x32 procedural shapes that network is both unavailable offline and the wrong tool (it would see
a blurry 299x299 upsampling of a handful of pixels). Instead minidit trains, once, a small CNN
classifier on the training split of the data set itself and uses it exactly like Inception:

* ``features``: the penultimate layer (after its ReLU), like Inception's 2048-d pool features;
* ``probs``: the softmax output, for the Inception Score and class accuracy;
* ``spatial``: the first intermediate convolutional map of at most 8x8 positions (4x4 for
  digits, 8x8 for shapes), first 7 channels flattened: the analogue of ADM's sFID features (the
  first 7 channels of Inception's 17x17 ``mixed_6/conv`` map), which keep spatial layout that
  the pooled features average away.

Training is deterministic (fixed seed, deterministic algorithms, a fixed data order) and takes a
few seconds on a laptop CPU; the weights are cached as safetensors under
``minidit.env.cache_dir("classifiers")``, named by data set and ``VERSION`` (bump it whenever the
architecture or recipe changes so stale caches are never reused).

Measured held-out test accuracy (2 CPU cores, torch 2.13): see ``OFFLINE_SPECS`` below; the
accuracy of the cached model is also stored in the file's metadata (``test_accuracy``).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minidit.data import get_dataset
from minidit.env import cache_dir

VERSION = 2

# Per data set: how to build the training/test splits and how long to train.
# Held-out test accuracy measured with VERSION = 2: digits 0.9916 (359 test-split images),
# shapes 0.871 (1000 images of the test stream).
OFFLINE_SPECS = {
    "digits": dict(train_kwargs={}, test_kwargs={}, epochs=20, batch_size=64, lr=3e-3, width=32),
    "shapes": dict(train_kwargs=dict(num_samples=6000), test_kwargs=dict(num_samples=1000),
                   epochs=12, batch_size=64, lr=5e-3, width=16),
}
N_SPATIAL_CHANNELS = 7  # as ADM's sFID: the first 7 channels of an intermediate map


class SmallCNN(nn.Module):
    """conv stem -> stride-2 conv stages down to 4x4 or less -> global mean+max pool
    -> fc + ReLU (the features) -> fc (logits).

    Channels double at every stride-2 stage. No normalisation layers, so train and eval behave
    the same and the features of one image never depend on the rest of its batch.
    """

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32,
                 feature_dim: int = 64):
        super().__init__()
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        stages, c, size = [], width, image_size
        while size > 4:
            stages.append(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1))
            c, size = 2 * c, (size + 1) // 2
        if not stages:
            raise ValueError(f"SmallCNN needs images of at least 5x5 pixels, got {image_size}")
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(2 * c, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (N, C, H, W) in [-1, 1] -> dict(features (N, F), logits (N, K), spatial (N, 7*h*w))."""
        h = F.relu(self.stem(x))
        spatial = None
        for stage in self.stages:
            h = F.relu(stage(h))
            if spatial is None and h.shape[-1] <= 8:
                # first map of at most 8x8: first 7 channels, (N, 7, h, w) -> (N, 7*h*w)
                spatial = h[:, :N_SPATIAL_CHANNELS].flatten(1)
        # global mean and max pooling: (N, c, s, s) -> (N, 2c); position-invariant, like
        # Inception's global average pool
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        features = F.relu(self.fc(pooled))
        return dict(features=features, logits=self.head(features), spatial=spatial)


def _split_tensors(name: str, train: bool, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (N, C, H, W) in [-1, 1] and labels (N,) of one split, without random flips."""
    ds = get_dataset(name, train=train, **kwargs)
    if hasattr(ds, "batch"):                       # procedural sets render a batch at once
        return ds.batch(range(len(ds)))
    if hasattr(ds, "images") and hasattr(ds, "labels"):
        return ds.images.float(), torch.as_tensor(ds.labels).long()
    xs, ys = zip(*(ds[i] for i in range(len(ds))))  # generic fallback
    return torch.stack(xs), torch.as_tensor(ys).long()


@torch.no_grad()
def accuracy(model: SmallCNN, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size])["logits"].argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def train_classifier(name: str, seed: int = 0, verbose: bool = True) -> tuple[SmallCNN, float]:
    """Train the offline classifier for data set ``name`` from scratch; returns (model, test acc).

    Deterministic: the seed fixes the initialisation and the data order, and
    ``torch.use_deterministic_algorithms`` (restored afterwards) rules out nondeterministic kernels.
    """
    if name not in OFFLINE_SPECS:
        raise ValueError(f"no offline classifier for {name!r}; known: {sorted(OFFLINE_SPECS)}")
    spec = OFFLINE_SPECS[name]
    x_train, y_train = _split_tensors(name, True, **spec["train_kwargs"])
    x_test, y_test = _split_tensors(name, False, **spec["test_kwargs"])
    was_deterministic, n_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    # one thread: these convolutions are too small to gain from more, and a single thread keeps
    # the result bit-identical across machines with different core counts
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SmallCNN(x_train.shape[1], x_train.shape[-1], int(y_train.max()) + 1,
                             width=spec["width"])
            opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
            steps = spec["epochs"] * ((len(x_train) + spec["batch_size"] - 1) // spec["batch_size"])
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec["lr"], total_steps=steps)
            g = torch.Generator().manual_seed(seed)
            for _ in range(spec["epochs"]):
                model.train()
                order = torch.randperm(len(x_train), generator=g)
                for i in range(0, len(x_train), spec["batch_size"]):
                    idx = order[i:i + spec["batch_size"]]
                    loss = F.cross_entropy(model(x_train[idx])["logits"], y_train[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(n_threads)
    model.eval().requires_grad_(False)
    acc = accuracy(model, x_test, y_test)
    if verbose:
        print(f"minidit: trained the offline '{name}' classifier (v{VERSION}): "
              f"test accuracy {acc:.4f} on {len(x_test)} held-out images")
    return model, acc


def classifier_path(name: str) -> Path:
    """Where the cached classifier for ``name`` lives (the file name carries ``VERSION``)."""
    return cache_dir("classifiers") / f"{name}_cnn_v{VERSION}.safetensors"


def load_offline_classifier(name: str, verbose: bool = True) -> tuple[SmallCNN, dict]:
    """The cached classifier for ``name`` (trained and cached on first use) and its metadata."""
    from safetensors.torch import load_file, safe_open, save_file

    path = classifier_path(name)
    if not path.is_file():
        model, acc = train_classifier(name, verbose=verbose)
        meta = dict(name=name, version=str(VERSION), test_accuracy=f"{acc:.6f}",
                    config=json.dumps(dict(channels=model.channels, image_size=model.image_size,
                                           num_classes=model.num_classes,
                                           width=OFFLINE_SPECS[name]["width"])))
        # write to a temporary file first, then rename: a concurrent reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file(model.state_dict(), tmp, metadata=meta)
        os.replace(tmp, path)
        return model, meta
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    cfg = json.loads(meta["config"])
    model = SmallCNN(cfg["channels"], cfg["image_size"], cfg["num_classes"], width=cfg["width"])
    model.load_state_dict(load_file(str(path)))
    return model.eval().requires_grad_(False), meta
