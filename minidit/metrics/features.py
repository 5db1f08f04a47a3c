"""Feature extractors: the network that turns images into the vectors every metric compares.

A metric is only comparable with a published number if the *features* are the same: the same
network, the same resizing, the same quantisation. So every extractor sits behind one interface:

    extractor = get_feature_extractor("digits")        # or "shapes", "inception:/path/file.pt"
    out = extractor.extract(images)                      # one pass over the images
    out["features"]  # (N, D) float64: FID, precision/recall
    out["probs"]     # (N, K) float64: Inception Score, class accuracy
    out["spatial"]   # (N, S) float64 or absent: sFID

``images`` are either uint8 numpy (N, H, W, C) in [0, 255] (the ``.npz`` layout) or float
tensors/arrays (N, C, H, W) in [-1, 1] (what a sampler returns).

Extractors:

* ``"digits"`` / ``"shapes"`` / ``"glyphs"``: a small CNN minidit trains on the data set's
  training split (``minidit.metrics.classifier``; cached). Held-out test accuracy: digits 0.9916
  (359 test images, recipe v2), shapes 1.000 (2000 test images, recipe v4), glyphs 0.998 (10,000
  images of the held-out stream, recipe v1), so class accuracy of samples
  measures what a model drew, not the judge's own mistakes.
* ``"inception:PATH"``: the TorchScript Inception-v3 ``inception-2015-12-05.pt`` of the
  StyleGAN2-ADA / StyleGAN3 / clean-fid family, a translation of the TensorFlow graph that the
  original FID and the ADM evaluator use. Called as the reference does: uint8-range float
  images (N, 3, H, W) in [0, 255], any size (the network resizes to 299x299 itself);
  ``net(x, return_features=True)`` gives the 2048-d pool features,
  ``net(x, no_output_bias=True)`` the 1008-way softmax used for IS (StyleGAN's IS setting).
  This TorchScript file exposes no intermediate maps, so sFID is not available with it; and its
  1008 outputs follow the TensorFlow graph's label map, not ImageNet's class ids, so there is no
  class accuracy with it either.
* ``"pytorch-fid:PATH"``: not implemented (see ``get_feature_extractor``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .classifier import OFFLINE_SPECS, load_offline_classifier
from .npz import to_uint8
from .precision_recall import pairwise_distances

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"


def to_model_input(images) -> torch.Tensor:
    """uint8 (N, H, W, C) in [0, 255] or float (N, C, H, W) in [-1, 1] -> float32 (N, C, H, W) in [-1, 1]."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"uint8 images must be (N, H, W, C) with C in (1, 3), got {images.shape}")
        # (N, H, W, C) -> (N, C, H, W);   x = pixel / 127.5 - 1
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        raise ValueError("uint8 images must be a numpy array in (N, H, W, C) layout (the .npz layout); "
                         "pass float tensors (N, C, H, W) in [-1, 1] otherwise")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"float images must be (N, C, H, W) with C in (1, 3) and values in [-1, 1], "
                         f"got shape {tuple(x.shape)}")
    return x.float()


class FeatureExtractor:
    """Base class. Subclasses set ``name``, ``channels``/``image_size`` (None = any) and ``_forward``.

    ``grey_to_rgb``: grey images are repeated to 3 channels (only for a network meant for any
    picture, as StyleGAN does for Inception). ``labels_are_class_ids``: ``probs`` column k is the
    data set's class k, so comparing argmax with the labels is a class accuracy.
    """

    name: str = "base"
    channels: int | None = None
    image_size: int | None = None
    has_spatial: bool = False
    grey_to_rgb: bool = False
    labels_are_class_ids: bool = False
    no_spatial_reason: str = "this extractor provides no spatial features"

    def __init__(self, device=None, batch_size: int = 250):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.batch_size = batch_size

    @property
    def batch_size(self) -> int:
        """Images per forward pass (at least 1)."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"batch size must be a positive integer, got {value!r}")
        self._batch_size = value

    def _forward(self, x: torch.Tensor, want: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """x: float32 (B, C, H, W) in [-1, 1] on ``self.device`` -> the requested outputs."""
        raise NotImplementedError

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels is not None and x.shape[1] != self.channels:
            if self.grey_to_rgb and self.channels == 3 and x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)          # grey -> RGB by repetition (as StyleGAN does)
        if self.channels is not None and x.shape[1] != self.channels:
            raise ValueError(f"the '{self.name}' extractor expects {self.channels}-channel images, got "
                             f"{x.shape[1]} channels; pick the extractor of the data set the images "
                             f"come from (--extractor)")
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"the '{self.name}' extractor expects {self.image_size}x{self.image_size} "
                             f"images, got {x.shape[-2]}x{x.shape[-1]}; pick the extractor of the "
                             f"data set the images come from (--extractor)")
        return x

    @torch.no_grad()
    def extract(self, images, want=("features", "probs", "spatial"), progress: bool = False,
                desc: str = "features") -> dict[str, np.ndarray]:
        """Run the network over ``images`` in batches; returns float64 arrays for each output in
        ``want`` (``spatial`` only if ``has_spatial``). ``progress`` shows a tqdm bar."""
        want = tuple(w for w in want if w != "spatial" or self.has_spatial)
        n = len(images)
        if n == 0:
            raise ValueError("no images to extract features from")
        out: dict[str, list] = {w: [] for w in want}
        for i in tqdm(range(0, n, self.batch_size), desc=desc, disable=not progress,
                      unit_scale=self.batch_size, unit="img"):
            x = self._check(to_model_input(images[i:i + self.batch_size])).to(self.device)
            got = self._forward(x, want)
            for w in want:
                out[w].append(got[w].double().cpu().numpy())
        return {w: np.concatenate(v) for w, v in out.items()}

    def features(self, images) -> np.ndarray:
        """(N, D) float64 features (FID, precision/recall)."""
        return self.extract(images, want=("features",))["features"]

    def probs(self, images) -> np.ndarray:
        """(N, K) float64 class probabilities (IS, class accuracy)."""
        return self.extract(images, want=("probs",))["probs"]

    def spatial_features(self, images) -> np.ndarray:
        """(N, S) float64 spatial features (sFID); only if ``has_spatial``."""
        if not self.has_spatial:
            raise NotImplementedError(f"the '{self.name}' extractor provides no spatial features (no sFID): "
                                      f"{self.no_spatial_reason}")
        return self.extract(images, want=("spatial",))["spatial"]


class ClassifierExtractor(FeatureExtractor):
    """A minidit offline classifier (``SmallCNN``) as a feature extractor."""

    has_spatial = True
    labels_are_class_ids = True  # trained on the data set's own labels

    def __init__(self, model, name: str, test_accuracy: float | None = None, device=None,
                 batch_size: int = 500):
        super().__init__(device, batch_size)
        self.model = model.to(self.device).eval()
        self.name, self.test_accuracy = name, test_accuracy
        self.channels, self.image_size = model.channels, model.image_size

    def _forward(self, x, want):
        out = self.model(x)
        return dict(features=out["features"], probs=out["logits"].softmax(dim=1), spatial=out["spatial"])


class TorchScriptInception(FeatureExtractor):
    """The TorchScript ``inception-2015-12-05.pt`` (StyleGAN2-ADA / StyleGAN3 / clean-fid).

    Quantisation as the reference: images are first rounded to uint8 (``to_uint8``, the DiT
    rounding; uint8 inputs pass unchanged), then given to the network as float in [0, 255];
    grey images are repeated to 3 channels; the network itself resizes to 299x299.
    """

    channels = 3
    grey_to_rgb = True
    # its 1008 outputs are the TensorFlow graph's own label map, not ImageNet's 1000 class ids
    labels_are_class_ids = False
    no_spatial_reason = ("the TorchScript Inception exposes only its pool features and logits, not the "
                         "intermediate mixed_6/conv map sFID is computed on")

    def __init__(self, path, device=None, batch_size: int = 100):
        super().__init__(device, batch_size)
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"no Inception file at {path}. minidit never downloads it: fetch "
                f"'inception-2015-12-05.pt' (the TorchScript Inception-v3 of StyleGAN2-ADA/clean-fid, "
                f"{INCEPTION_URL}) yourself and pass --extractor inception:/path/to/inception-2015-12-05.pt")
        try:
            self.net = torch.jit.load(str(path), map_location=self.device).eval()
        except RuntimeError as e:
            raise ValueError(f"{path} is not a TorchScript file ({e.__class__.__name__}); expected "
                             f"inception-2015-12-05.pt from {INCEPTION_URL}") from e
        self.name = f"inception:{path.name}"

    def _forward(self, x, want):
        # [-1, 1] -> uint8 (DiT rounding) -> float in [0, 255], (B, C, H, W)
        x255 = torch.from_numpy(to_uint8(x.cpu())).permute(0, 3, 1, 2).float().to(self.device)
        out = {}
        if "features" in want:
            out["features"] = self.net(x255, return_features=True)
        if "probs" in want:
            out["probs"] = self.net(x255, no_output_bias=True)
        return out


def get_feature_extractor(spec: str = "digits", device=None, verbose: bool = True) -> FeatureExtractor:
    """Build an extractor from a spec string: "digits", "shapes", "glyphs", "inception:PATH".

    "pytorch-fid:PATH" (the ``pt_inception-2015-12-05-6726825d.pth`` state dict) would need
    pytorch-fid's FID-specific InceptionV3 architecture, which minidit does not re-implement: it
    raises NotImplementedError pointing to the TorchScript file, which gives the same features.
    """
    kind, _, arg = spec.partition(":")
    if kind in OFFLINE_SPECS and not arg:
        model, meta = load_offline_classifier(kind, verbose=verbose)
        return ClassifierExtractor(model, kind, float(meta["test_accuracy"]), device=device)
    if kind == "inception" and arg:
        return TorchScriptInception(arg, device=device)
    if kind == "pytorch-fid":
        raise NotImplementedError(
            "the pytorch-fid weights (pt_inception-2015-12-05-6726825d.pth) need pytorch-fid's own "
            "InceptionV3 definition, which minidit does not include; use the TorchScript translation "
            f"of the same TensorFlow network instead: --extractor inception:/path/to/inception-2015-12-05.pt "
            f"({INCEPTION_URL})")
    raise ValueError(f"unknown feature extractor {spec!r}; use one of {sorted(OFFLINE_SPECS)} or "
                     "inception:/path/to/inception-2015-12-05.pt")


def class_accuracy(images, labels, extractor: FeatureExtractor) -> float:
    """Fraction of ``images`` that the extractor's classifier assigns to the requested ``labels``.

    The most direct measure of class-conditional sampling (and of classifier-free guidance,
    chapter 11): a sample of "class 3" that the classifier calls a 3 obeyed its label.
    """
    if not extractor.labels_are_class_ids:
        raise ValueError(f"the '{extractor.name}' extractor's outputs are not the data set's class ids: no class "
                         f"accuracy with it")
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"need one label per image: {len(images)} images, labels shape {labels.shape}")
    pred = extractor.probs(images).argmax(axis=1)
    return float((pred == labels).mean())


def within_class_diversity(images, labels, extractor: FeatureExtractor) -> float:
    """Mean pairwise feature distance between images of the same class, averaged over classes.

    A mode-collapsed class-conditional model draws (nearly) the same image for a label, so this
    drops towards 0; compare it with the value of real images of the data set. Classes with
    fewer than 2 images are skipped.
    """
    labels = np.asarray(labels)
    feats = extractor.features(images)
    per_class = []
    for c in np.unique(labels):
        f = feats[labels == c]
        if len(f) < 2:
            continue
        d = pairwise_distances(f, f).numpy()
        # mean over the n(n-1) ordered pairs i != j (the diagonal is 0)
        per_class.append(d.sum() / (len(f) * (len(f) - 1)))
    if not per_class:
        raise ValueError("within_class_diversity needs at least 2 images of some class")
    return float(np.mean(per_class))
