"""minidit.metrics: the numbers of the DiT paper's Table 2, computed from scratch.

Reading order (one concept per module):

* ``fid``              -- Fréchet distance between feature Gaussians: FID and sFID;
* ``inception_score``  -- IS, confident and varied class predictions;
* ``precision_recall`` -- k-NN manifold precision (realism) and recall (coverage);
* ``classifier``       -- the small offline CNNs that replace Inception on digits/shapes;
* ``features``         -- the feature-extractor interface (offline CNNs, TorchScript Inception),
  class accuracy and within-class diversity;
* ``npz``              -- ADM-format sample batches (``arr_0`` uint8 NHWC, ``arr_1`` labels).

``python -m minidit.evaluate`` puts them together.
"""
from .features import (ClassifierExtractor, FeatureExtractor, TorchScriptInception, class_accuracy,
                       get_feature_extractor, within_class_diversity)
from .fid import feature_statistics, fid_from_features, frechet_distance
from .inception_score import inception_score
from .npz import load_samples_npz, save_samples_npz, to_uint8
from .precision_recall import pairwise_distances, precision_recall

__all__ = [
    "frechet_distance", "feature_statistics", "fid_from_features", "inception_score",
    "precision_recall", "pairwise_distances", "FeatureExtractor", "ClassifierExtractor",
    "TorchScriptInception", "get_feature_extractor", "class_accuracy", "within_class_diversity",
    "save_samples_npz", "load_samples_npz", "to_uint8",
]
