"""What every experiment measures with: its data sets, and the FID of a model on them.

The runs of the ablation (chapter 11), the scaling study and its frontier (chapter 12) and the
latent-vs-pixel comparison differ in what they train; they all read their images from here and are
judged by the one ``fid_of_model`` below, so their numbers can be set side by side.

FID here is the paper's FID with two honest substitutions for a CPU: the features come from
minidit's offline classifier of the run's data set (minidit/metrics/classifier.py, 64-d
penultimate layer) instead of Inception-v3, and the sample counts are hundreds or a thousand, not
50K. Numbers are therefore comparable with each other (same extractor, same N, same reference
set), never with the paper's. ``estimator_noise`` measures what the metric reads for a perfect
model at a sample count: the floor under every FID of that count.

Three data sets: sklearn's 8x8 ``digits`` (the reference set of its FID is the training split) for
quick runs and tests, 16x16 ``glyphs`` (50,000 rendered training images; the reference is 10,000
images of the held-out stream) for the studies, and 32x32 RGB ``shapes`` for the latent-vs-pixel
comparison (latent.py), whose latent runs train on the tiny autoencoder's latents
(``tiny_vae``, ``latent_moments``) and are measured on their decoded pixels. Rendered images are
cached on disk, so the workers of a grid render them once.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from minidit.data import Glyphs, Shapes, get_dataset
from minidit.diffusion import create_diffusion
from minidit.env import cache_dir
from minidit.files import atomic_path
from minidit.generation import generate
from minidit.metrics.classifier import load_offline_classifier
from minidit.metrics.fid import fid_from_features
from minidit.vae import load_vae

NUM_CLASSES = 10

# data set -> (image side, channels, training images, FID reference: "train" = the training
# images themselves, or N = that many images of the held-out stream)
DATA = {"digits": (8, 1, None, "train"), "glyphs": (16, 1, 50_000, 10_000), "shapes": (32, 3, 20_000, 5_000)}
LATENT_DATASET = "shapes"  # the data set the tiny autoencoder is trained on (minidit/autoencoder.py)
DATA_VERSION = {"digits": 1, "glyphs": Glyphs.version, "shapes": Shapes.version}


@lru_cache(maxsize=None)
def _classifier(dataset: str):
    with torch.enable_grad():  # the first call trains (and caches) the classifier
        model, _ = load_offline_classifier(dataset, verbose=False)
    return model


def classify(images: torch.Tensor, dataset: str, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """64-d features and class logits of images in [-1, 1] from the data set's offline classifier
    (Inception's stand-in)."""
    net = _classifier(dataset)
    feats, logits = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out = net(images[i:i + batch_size].float().cpu())
            feats.append(out["features"])
            logits.append(out["logits"])
    return torch.cat(feats), torch.cat(logits)


def features(images: torch.Tensor, dataset: str = "digits", batch_size: int = 1000) -> torch.Tensor:
    """64-d features of images in [-1, 1] from the data set's offline classifier."""
    return classify(images, dataset, batch_size)[0]


def _rendered(dataset: str, num_samples: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A procedural set's first ``num_samples`` images and labels, rendered once and kept in the
    minidit cache (a grid's workers and its reruns all read the same file)."""
    from safetensors.torch import load_file, save_file

    ds = get_dataset(dataset, train=train, num_samples=num_samples)
    # the data set's version is in the name, so images drawn by an older version are never reused
    path = cache_dir("data") / f"{dataset}-v{ds.version}-{'train' if train else 'test'}-{num_samples}.safetensors"
    if path.is_file():
        d = load_file(str(path))
        return d["images"], d["labels"]
    # every procedural set's batch is contiguous, as a read from the file is (tests/test_data.py):
    # a strided tensor goes through other kernels, whose last bits differ, and a run would not
    # reproduce a run that found the file already there
    x, y = ds.batch(range(num_samples))
    with atomic_path(path) as tmp:
        save_file(dict(images=x, labels=y), str(tmp))
    return x, y


@lru_cache(maxsize=None)
def real_data(dataset: str = "digits", train_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images ``(N, C, S, S)`` in [-1, 1] and labels ``(N,)`` of ``dataset``
    (procedural sets: the first ``train_samples``, default DATA's count)."""
    _, _, n_train, _ = DATA[dataset]
    n_train = train_samples or n_train
    if n_train is not None:
        return _rendered(dataset, n_train, train=True)
    ds = get_dataset(dataset, train=True)
    return ds.images.float(), torch.as_tensor(ds.labels).long()


@lru_cache(maxsize=None)
def real_features(dataset: str = "digits") -> torch.Tensor:
    """Features of the reference images: the real side of every FID of ``dataset``."""
    _, _, _, reference = DATA[dataset]
    images = real_data(dataset)[0] if reference == "train" else _rendered(dataset, reference, train=False)[0]
    return features(images, dataset)


def fid_of_model(model, num_samples: int, sampling_steps: int, cfg_scale: float = 1.0,
                 seed: int = 0, batch_size: int = 500, dataset: str = "digits",
                 clip_denoised: bool = False, with_accuracy: bool = False, vae=None):
    """FID of ``num_samples`` class-balanced samples of ``model`` vs the data set's reference images.

    Sampling: ancestral DDPM on a chain respaced to ``sampling_steps`` steps, learned variance,
    classifier-free guidance only when ``cfg_scale > 1`` (as the official sample_ddp.py), the
    predicted x_0 clipped when ``clip_denoised``. The starting noise and the per-step noise are
    seeded with ``seed`` without touching the caller's RNG, so two models are compared on the
    same noise. ``with_accuracy``: also return the fraction of samples the classifier assigns to
    the class they were drawn for (does the model follow its label?), as ``(fid, accuracy)``.
    """
    device = next(model.parameters()).device
    diffusion = create_diffusion(str(sampling_steps), learn_sigma=model.learn_sigma)
    labels = torch.arange(num_samples) % NUM_CLASSES
    shape = (model.in_channels, model.input_size, model.input_size)
    chunks = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        for idx in torch.split(torch.arange(num_samples), batch_size):
            chunks.append(generate(model, diffusion, labels[idx], shape, NUM_CLASSES, cfg_scale=cfg_scale,
                                   device=device, generator=gen, clip_denoised=clip_denoised, vae=vae).cpu())
    fake, logits = classify(torch.cat(chunks), dataset)
    fid = float(fid_from_features(real_features(dataset).double().numpy(), fake.double().numpy()))
    if with_accuracy:
        return fid, float((logits.argmax(1) == labels).float().mean())
    return fid


def estimator_noise(dataset: str, num_samples: int, draws: int = 5) -> list[float]:
    """FID of ``draws`` disjoint sets of ``num_samples`` REAL training images against the reference:
    what the metric reads for a perfect model at this sample count (its bias and its spread),
    the floor every model's FID sits on."""
    needed = draws * num_samples
    # a procedural set renders just the images asked for (its first ``needed`` training images)
    images = _rendered(dataset, needed, train=True)[0] if DATA[dataset][2] is not None else real_data(dataset)[0]
    if needed > len(images):
        raise ValueError(f"{draws} x {num_samples} images, but {dataset} has {len(images)} training images")
    ref = real_features(dataset).double().numpy()
    return [float(fid_from_features(ref, features(images[i * num_samples:(i + 1) * num_samples], dataset)
                                    .double().numpy())) for i in range(draws)]


@lru_cache(maxsize=None)
def tiny_vae():
    """The tiny autoencoder behind the VAE interface (trained once on first use, then cached)."""
    with torch.enable_grad():
        return load_vae("tiny", device="cpu")


@lru_cache(maxsize=None)
def latent_moments(dataset: str, train_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The scaled posterior ``(mean, std)`` of every training image, each ``(N, 4, S/8, S/8)``:
    encoded once, so training draws a fresh ``z = mean + std * eps`` per step without running the
    encoder (what ``python -m minidit.extract`` stores on disk for the trainer)."""
    images = real_data(dataset, train_samples)[0]
    with torch.no_grad():
        moments = [tiny_vae().encode_moments(chunk) for chunk in torch.split(images, 1000)]
    return torch.cat([m for m, _ in moments]), torch.cat([s for _, s in moments])
