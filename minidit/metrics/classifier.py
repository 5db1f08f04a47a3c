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

Training is deterministic (fixed seed, deterministic algorithms, a fixed data order) and takes
seconds (digits) to a few minutes (shapes) on one CPU thread; the weights are cached as
safetensors under ``minidit.env.cache_dir("classifiers")``, named by data set and the recipe's
``version`` (bumped whenever that data set's architecture or recipe changes, so stale caches are
never reused).

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

# Per data set: how to build the training/test splits, the network, how long to train, and the
# version of that recipe (part of the cache file name).
# Held-out test accuracy: digits 0.9916 (v2, 359 test-split images); shapes 1.0000 (v4, 2000
# images of the test stream).
# Why shapes v4 looks like it does: the network of v3 (made for the first shapes data set, whose
# small rotated squares, diamonds, hexagons and hearts differed by a pixel or two): the 16x16 and
# 8x8 resolutions each get a second 3x3 convolution (``refine``), and batch norm lets that deeper
# net train at a high learning rate. Each batch is mirrored left-right at random (``symmetries``,
# elements of the square's symmetry group, see ``dihedral``): free extra data, because every shape
# is mirror-symmetric about the vertical axis and the background's direction is uniform, so a
# mirrored image is just another draw from the same distribution (not so for digits: a mirrored 3
# is no 3). The shapes are upright, so quarter turns would not be: a turned triangle points sideways.
# Cost: 1.5 to 3 CPU minutes on one thread.
OFFLINE_SPECS = {
    "digits": dict(version=2, train_kwargs={}, test_kwargs={}, epochs=20, batch_size=64, lr=3e-3,
                   width=32, batch_norm=False, refine=False, symmetries=(0,)),
    # glyphs (the scaling study's 16x16 digits in 20 fonts): 20,000 images, 8 epochs, held-out
    # accuracy 0.998 on 10,000 images of the test stream, about a CPU minute on one thread
    "glyphs": dict(version=1, train_kwargs=dict(num_samples=20_000), test_kwargs=dict(num_samples=10_000),
                   epochs=8, batch_size=128, lr=5e-3, width=16, batch_norm=False, refine=False,
                   symmetries=(0,)),
    "shapes": dict(version=4, train_kwargs=dict(num_samples=6000), test_kwargs=dict(num_samples=2000),
                   epochs=12, batch_size=32, lr=5e-3, width=16, batch_norm=True, refine=True,
                   symmetries=(0, 4)),
}
N_SPATIAL_CHANNELS = 7  # as ADM's sFID: the first 7 channels of an intermediate map


class SmallCNN(nn.Module):
    """conv stem -> stride-2 conv stages down to 4x4 or less -> global mean+max pool
    -> fc + ReLU (the features) -> fc (logits).

    Channels double at every stride-2 stage. ``refine``: one more 3x3 convolution after each
    stride-2 one that lands above 4x4 (more capacity where the fine detail still is).
    ``batch_norm``: BatchNorm after every convolution, for a fast, stable training of the deeper
    net; in eval mode it uses its running statistics, so the features of one image never depend
    on the rest of its batch. Without it (``batch_norm=False``, the digits recipe) train and eval
    behave the same; the modules then have no normalisation at all.
    """

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32,
                 feature_dim: int = 64, batch_norm: bool = False, refine: bool = False):
        super().__init__()
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes

        def norm(c: int) -> nn.Module:
            # Identity has no state, so a net without batch norm keeps the v2 state-dict keys
            return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

        self.stem, self.stem_norm = nn.Conv2d(channels, width, 3, padding=1), norm(width)
        stages, stage_norms, refines, refine_norms, c, size = [], [], [], [], width, image_size
        while size > 4:
            stages.append(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1))
            c, size = 2 * c, (size + 1) // 2
            stage_norms.append(norm(c))
            more = refine and size > 4
            refines.append(nn.Conv2d(c, c, 3, padding=1) if more else nn.Identity())
            refine_norms.append(norm(c) if more else nn.Identity())
        if not stages:
            raise ValueError(f"SmallCNN needs images of at least 5x5 pixels, got {image_size}")
        self.stages, self.stage_norms = nn.ModuleList(stages), nn.ModuleList(stage_norms)
        self.refines, self.refine_norms = nn.ModuleList(refines), nn.ModuleList(refine_norms)
        self.fc = nn.Linear(2 * c, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (N, C, H, W) in [-1, 1] -> dict(features (N, F), logits (N, K), spatial (N, 7*h*w))."""
        h = F.relu(self.stem_norm(self.stem(x)))
        spatial = None
        for stage, stage_norm, refine, refine_norm in zip(self.stages, self.stage_norms,
                                                          self.refines, self.refine_norms):
            h = F.relu(stage_norm(stage(h)))
            if not isinstance(refine, nn.Identity):
                h = F.relu(refine_norm(refine(h)))
            if spatial is None and h.shape[-1] <= 8:
                # first map of at most 8x8: first 7 channels, (N, 7, h, w) -> (N, 7*h*w)
                spatial = h[:, :N_SPATIAL_CHANNELS].flatten(1)
        # global mean and max pooling: (N, c, s, s) -> (N, 2c); position-invariant, like
        # Inception's global average pool
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        features = F.relu(self.fc(pooled))
        return dict(features=features, logits=self.head(features), spatial=spatial)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` (0..7) of the symmetry group of the square applied to images (N, C, H, W):
    a rotation by ``k % 4`` quarter turns, then a left-right mirror when ``k >= 4``."""
    x = torch.rot90(x, k % 4, dims=(2, 3))
    return x.flip(-1) if k >= 4 else x


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

    Deterministic: the seed fixes the initialisation, the data order and the augmentation, and
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
    # batch norm's CPU kernels are ~20% faster on channels-last (N, H, W, C) memory
    memory_format = torch.channels_last if spec["batch_norm"] else torch.contiguous_format
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SmallCNN(x_train.shape[1], x_train.shape[-1], int(y_train.max()) + 1,
                             width=spec["width"], batch_norm=spec["batch_norm"], refine=spec["refine"])
            model.to(memory_format=memory_format)
            opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
            steps = spec["epochs"] * ((len(x_train) + spec["batch_size"] - 1) // spec["batch_size"])
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec["lr"], total_steps=steps)
            g = torch.Generator().manual_seed(seed)
            for _ in range(spec["epochs"]):
                model.train()
                order = torch.randperm(len(x_train), generator=g)
                for i in range(0, len(x_train), spec["batch_size"]):
                    idx = order[i:i + spec["batch_size"]]
                    x = x_train[idx]
                    if len(spec["symmetries"]) > 1:   # one of the allowed symmetries per batch
                        k = spec["symmetries"][int(torch.randint(len(spec["symmetries"]), (1,), generator=g))]
                        x = dihedral(x, k)
                    logits = model(x.contiguous(memory_format=memory_format))["logits"]
                    loss = F.cross_entropy(logits, y_train[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(n_threads)
    # back to the standard layout: the cache stores (and callers pass) ordinary contiguous tensors
    model.to(memory_format=torch.contiguous_format).eval().requires_grad_(False)
    acc = accuracy(model, x_test, y_test)
    if verbose:
        print(f"minidit: trained the offline '{name}' classifier (v{spec['version']}): "
              f"test accuracy {acc:.4f} on {len(x_test)} held-out images")
    return model, acc


def classifier_path(name: str) -> Path:
    """Where the cached classifier for ``name`` lives (the file name carries the recipe's version)."""
    if name not in OFFLINE_SPECS:
        raise ValueError(f"no offline classifier for {name!r}; known: {sorted(OFFLINE_SPECS)}")
    return cache_dir("classifiers") / f"{name}_cnn_v{OFFLINE_SPECS[name]['version']}.safetensors"


def load_offline_classifier(name: str, verbose: bool = True) -> tuple[SmallCNN, dict]:
    """The cached classifier for ``name`` (trained and cached on first use) and its metadata."""
    from safetensors.torch import load_file, safe_open, save_file

    path = classifier_path(name)
    if not path.is_file():
        model, acc = train_classifier(name, verbose=verbose)
        spec = OFFLINE_SPECS[name]
        meta = dict(name=name, version=str(spec["version"]), test_accuracy=f"{acc:.6f}",
                    config=json.dumps(dict(channels=model.channels, image_size=model.image_size,
                                           num_classes=model.num_classes, width=spec["width"],
                                           batch_norm=spec["batch_norm"], refine=spec["refine"])))
        # write to a temporary file first, then rename: a concurrent reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file(model.state_dict(), tmp, metadata=meta)
        os.replace(tmp, path)
        return model, meta
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    cfg = json.loads(meta["config"])
    model = SmallCNN(cfg["channels"], cfg["image_size"], cfg["num_classes"], width=cfg["width"],
                     batch_norm=cfg.get("batch_norm", False), refine=cfg.get("refine", False))
    model.load_state_dict(load_file(str(path)))
    return model.eval().requires_grad_(False), meta
