"""Feature extractors: TorchScript Inception loading (on a stand-in), the offline classifiers,
class accuracy and within-class diversity."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minidit.metrics import (class_accuracy, fid_from_features, get_feature_extractor, to_uint8,
                             within_class_diversity)
from minidit.metrics.classifier import (OFFLINE_SPECS, SmallCNN, _split_tensors, classifier_path,
                                        dihedral)


def offline_extractor(tmp_path_factory, name: str):
    """The offline classifier ``name``, trained once per test session into a private cache
    (shared by test_evaluate.py)."""
    cache = Path(tmp_path_factory.getbasetemp()) / "minidit_cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIDIT_CACHE", str(cache))
        extractor = get_feature_extractor(name, verbose=False)
        assert classifier_path(name).is_file() and str(cache) in str(classifier_path(name))
        yield extractor


@pytest.fixture(scope="session")
def digits_extractor(tmp_path_factory):
    yield from offline_extractor(tmp_path_factory, "digits")


@pytest.fixture(scope="session")
def shapes_extractor(tmp_path_factory):
    yield from offline_extractor(tmp_path_factory, "shapes")


@pytest.fixture(scope="session")
def glyphs_extractor(tmp_path_factory):
    """The scaling study's feature space."""
    yield from offline_extractor(tmp_path_factory, "glyphs")


class InceptionStandIn(torch.nn.Module):
    """Same call convention as inception-2015-12-05.pt: float images in [0, 255], any size,
    resized inside; ``return_features=True`` -> (N, dim) features (2048 in the real one), else (N, 1008) softmax."""

    def __init__(self, dim: int = 2048):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 4 * 4, dim)
        self.head = torch.nn.Linear(dim, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        if bool(img.min() < 0) or bool(img.max() > 255) or img.shape[1] != 3:
            raise ValueError("stand-in: expected (N, 3, H, W) in [0, 255]")
        x = F.interpolate(img / 127.5 - 1.0, size=(4, 4), mode="bilinear", align_corners=False)
        features = torch.relu(self.proj(x.flatten(1)))
        if return_features:
            return features
        logits = features @ self.head.weight.T
        if not no_output_bias:
            logits = logits + self.head.bias
        return logits.softmax(dim=1)


@pytest.fixture
def standin_path(tmp_path):
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(InceptionStandIn()), str(path))
    return path


def test_torchscript_inception_loads_and_calls_like_the_reference(standin_path):
    extractor = get_feature_extractor(f"inception:{standin_path}")
    net = torch.jit.load(str(standin_path))
    images = np.random.default_rng(0).integers(0, 256, size=(5, 12, 12, 3), dtype=np.uint8)
    x255 = torch.from_numpy(images).permute(0, 3, 1, 2).float()       # what the reference feeds
    out = extractor.extract(images)
    assert set(out) == {"features", "probs"}                            # no spatial map: no sFID
    assert out["features"].shape == (5, 2048) and out["features"].dtype == np.float64
    with torch.no_grad():
        expected_features = net(x255, return_features=True).double().numpy()
        expected_probs = net(x255, no_output_bias=True).double().numpy()
    np.testing.assert_allclose(out["features"], expected_features, rtol=1e-6)
    np.testing.assert_allclose(out["probs"], expected_probs, rtol=1e-6)
    # float input in [-1, 1] is quantised to uint8 first (DiT rounding), grey is repeated to RGB
    xf = torch.rand(3, 1, 12, 12) * 2 - 1
    grey = to_uint8(xf)
    np.testing.assert_allclose(extractor.features(xf), extractor.features(np.repeat(grey, 3, axis=-1)))
    with pytest.raises(NotImplementedError, match="spatial"):
        extractor.spatial_features(images)


def test_extractor_spec_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads.*inception-2015-12-05.pt"):
        get_feature_extractor(f"inception:{tmp_path / 'nope.pt'}")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        get_feature_extractor(f"inception:{tmp_path / 'junk.pt'}")
    with pytest.raises(NotImplementedError, match="inception-2015-12-05.pt"):
        get_feature_extractor(f"pytorch-fid:{tmp_path / 'pt_inception-2015-12-05-6726825d.pth'}")
    with pytest.raises(ValueError, match="unknown feature extractor"):
        get_feature_extractor("resnet")


def test_digits_extractor_fid_grows_with_noise_and_blur(digits_extractor):
    ex = digits_extractor
    assert ex.test_accuracy > 0.95
    x_train, _ = _split_tensors("digits", True)
    x_test, y_test = _split_tensors("digits", False)
    f_train = ex.features(to_uint8(x_train))
    g = torch.Generator().manual_seed(0)
    fids = []
    for sigma in (0.0, 0.1, 0.2, 0.5):
        noised = (x_test + sigma * torch.randn(x_test.shape, generator=g)).clamp(-1, 1)
        fids.append(fid_from_features(f_train, ex.features(to_uint8(noised))))
    assert all(a < b for a, b in zip(fids, fids[1:])), f"FID not increasing with noise: {fids}"
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3) / 16
    blurred = F.conv2d(F.pad(x_test, (1, 1, 1, 1), mode="replicate"), kernel)
    assert fid_from_features(f_train, ex.features(to_uint8(blurred))) > fids[0]
    # the classifier recognises real test digits, and the cache makes a second load identical
    assert class_accuracy(to_uint8(x_test), y_test.numpy(), ex) > 0.95
    again = get_feature_extractor("digits", verbose=False)
    np.testing.assert_array_equal(again.features(x_test[:20]), ex.features(x_test[:20]))


def test_digits_extractor_outputs_and_collapse_measure(digits_extractor):
    ex = digits_extractor
    x, y = _split_tensors("digits", False)
    out = ex.extract(x)                                     # float NCHW in [-1, 1] also accepted
    assert out["features"].shape == (len(x), 64)
    assert out["spatial"].shape == (len(x), 7 * 4 * 4)
    np.testing.assert_allclose(out["probs"].sum(1), 1.0, rtol=1e-6)
    # one image repeated per class (a collapsed model) has zero within-class diversity
    real = within_class_diversity(x, y.numpy(), ex)
    collapsed = torch.stack([x[y == c][0] for c in y.numpy()])
    assert real > 0.5 and within_class_diversity(collapsed, y.numpy(), ex) < 1e-3 * real
    with pytest.raises(ValueError, match="3-channel|1-channel"):
        ex.features(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="8x8"):
        ex.features(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="one label per image"):
        class_accuracy(x[:4], [0, 1], ex)


def test_dihedral_is_the_symmetry_group_of_the_square():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    images = [dihedral(x, k) for k in range(8)]
    # eight different images, all permutations of the same pixels
    assert len({tuple(im.flatten().tolist()) for im in images}) == 8
    assert all(torch.equal(im.flatten(1).sort(1).values, x.flatten(1).sort(1).values) for im in images)
    assert torch.equal(dihedral(x, 1), x.transpose(2, 3).flip(2))                  # a quarter turn
    assert torch.equal(dihedral(x, 4), x.flip(-1))                                  # the mirror
    assert torch.equal(dihedral(dihedral(x, 3), 1), x)                              # 3 + 1 quarter turns
    assert torch.equal(dihedral(dihedral(x, 5), 5), x)                              # mirrors are involutions


def test_small_cnn_variants_keep_digits_layout_and_batch_independence():
    # no batch norm, no refine (the digits recipe): exactly the v2 parameters, so caches stay valid
    plain = SmallCNN(1, 8, 10, width=32)
    assert sorted(plain.state_dict()) == ["fc.bias", "fc.weight", "head.bias", "head.weight",
                                          "stages.0.bias", "stages.0.weight", "stem.bias", "stem.weight"]
    # 1*32*9+32 + 32*64*9+64 + 128*64+64 + 64*10+10
    assert sum(p.numel() for p in plain.parameters()) == 320 + 18496 + 8256 + 650
    # shapes: 32x32 -> 16 -> 8 -> 4; refine convolutions at 16x16 and 8x8 only, batch norm everywhere
    net = SmallCNN(3, 32, 10, width=16, batch_norm=True, refine=True)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.stride[0]) for m in convs] == [
        (3, 16, 1), (16, 32, 2), (32, 64, 2), (64, 128, 2), (32, 32, 1), (64, 64, 1)]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 6
    # in eval mode an image's features do not depend on the rest of its batch
    torch.manual_seed(0)
    net.train()(torch.randn(16, 3, 32, 32))                     # move the running statistics
    net.eval()
    x = torch.randn(5, 3, 32, 32)
    out = net(x)
    assert out["features"].shape == (5, 64) and out["spatial"].shape == (5, 7 * 8 * 8)
    torch.testing.assert_close(net(x[2:3])["features"], out["features"][2:3])


def test_shapes_classifier_held_out_accuracy(shapes_extractor):
    ex = shapes_extractor
    x_test, y_test = _split_tensors("shapes", False, **OFFLINE_SPECS["shapes"]["test_kwargs"])
    assert len(x_test) == 2000
    acc = class_accuracy(x_test, y_test.numpy(), ex)
    assert acc >= 0.98, f"shapes classifier: held-out accuracy {acc:.4f} < 0.98"
    assert abs(acc - ex.test_accuracy) < 1e-6                          # what the cache recorded
    # every class, not just on average (a dropped class would cost 10 points)
    pred = ex.probs(x_test).argmax(1)
    per_class = [(pred[y_test.numpy() == c] == c).mean() for c in range(10)]
    assert min(per_class) >= 0.95, per_class
    # the features serve FID: fresh real images are close, noised ones far, and farther with more noise
    x_train, _ = _split_tensors("shapes", True, num_samples=2000)
    f_train = ex.features(x_train)
    g = torch.Generator().manual_seed(0)
    fids = [fid_from_features(f_train, ex.features(
        (x_test + sigma * torch.randn(x_test.shape, generator=g)).clamp(-1, 1))) for sigma in (0.0, 0.1, 0.3)]
    assert all(a < b for a, b in zip(fids, fids[1:])), f"FID not increasing with noise: {fids}"
    # the cache gives back the same network
    again = get_feature_extractor("shapes", verbose=False)
    np.testing.assert_array_equal(again.features(x_test[:20]), ex.features(x_test[:20]))


def test_an_extractor_refuses_images_it_was_not_made_for(digits_extractor, standin_path):
    """The 'shapes' CNN takes 32x32 RGB: 8x8 grey digits used to be repeated to RGB and pass unchecked
    (a meaningless FID). Only Inception, a network for any picture, repeats grey to RGB."""
    shapes_like = type(digits_extractor)(digits_extractor.model, "shapes-like")
    shapes_like.channels, shapes_like.image_size = 3, 32
    with pytest.raises(ValueError, match="'shapes-like' extractor expects 3-channel images, got 1"):
        shapes_like.features(np.zeros((2, 8, 8, 1), np.uint8))
    with pytest.raises(ValueError, match="expects 32x32 images, got 8x8"):
        shapes_like.features(np.zeros((2, 8, 8, 3), np.uint8))
    inception = get_feature_extractor(f"inception:{standin_path}")
    assert inception.features(np.zeros((2, 8, 8, 1), np.uint8)).shape == (2, 2048)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="batch size must be a positive integer"):
            inception.batch_size = bad


def test_no_class_accuracy_from_inception_outputs(standin_path):
    """Inception's 1008 outputs follow the TensorFlow graph's label map, not ImageNet class ids."""
    inception = get_feature_extractor(f"inception:{standin_path}")
    assert not inception.labels_are_class_ids
    with pytest.raises(ValueError, match="not the data set's class ids"):
        class_accuracy(np.zeros((2, 8, 8, 3), np.uint8), [0, 1], inception)
    with pytest.raises(NotImplementedError, match="mixed_6/conv"):
        inception.spatial_features(np.zeros((2, 8, 8, 3), np.uint8))


def test_glyphs_classifier_held_out_accuracy_and_features(glyphs_extractor):
    ex = glyphs_extractor
    assert (ex.channels, ex.image_size) == (1, 16)
    x_test, y_test = _split_tensors("glyphs", False, **OFFLINE_SPECS["glyphs"]["test_kwargs"])
    assert len(x_test) == 10_000
    acc = class_accuracy(x_test, y_test.numpy(), ex)
    assert acc >= 0.99, f"glyphs classifier: held-out accuracy {acc:.4f} < 0.99"
    assert abs(acc - ex.test_accuracy) < 1e-6
    # the features rank noise: real vs real is small, noised images are farther, more noise farther
    x_train, _ = _split_tensors("glyphs", True, num_samples=2000)
    f_test = ex.features(x_test)
    g = torch.Generator().manual_seed(0)
    fids = [fid_from_features(f_test, ex.features((x_train + s * torch.randn(x_train.shape, generator=g)).clamp(-1, 1)))
            for s in (0.0, 0.1, 0.3)]
    assert fids[0] < 10 and all(a < b for a, b in zip(fids, fids[1:])), fids
