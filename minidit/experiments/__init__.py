"""The paper's experiments at CPU scale, as scripts (chapters 9, 11-13).

* ``ablation`` -- Figure 5: the four conditioning variants trained with one budget, FID over training;
* ``scaling``  -- Figures 2, 8, 9, 10: model size x patch size, FID vs Gflops / training compute /
  sampling compute; ``--grid AFP``: a second grid of smaller models, below the compute-optimal size,
  where Figure 9 is measured;
* ``frontier`` -- why Figure 9 inverts on a CPU: model sizes at one training compute (an IsoFLOP
  profile) with the compute-optimal size inside the range, measured at three computes, and how
  that size grows with the compute;
* ``latent``   -- section 3.2: the same DiT on the tiny autoencoder's latents and on pixels, at
  equal training compute;
* ``cost``     -- what the full-size DiT-XL/2 run costs (latent size, GPU-hours; MFU is in
  minidit/flops.py);
* ``gpu_grid`` -- the paper's 12-model grid on GPUs: its torchrun commands and time estimates;
* ``common``   -- the one recipe the scripts train with, and the run that trains and measures it;
* ``measure``  -- the data sets, and the FID every run is judged by (the offline classifier's
  features; the estimator's own floor);
* ``grid``     -- many runs: one cached JSON per run, worker processes;
* ``claims``   -- the paper's scaling claims, checked on a finished grid;
* ``cli``      -- the command line the scripts share.

Run them as ``python -m minidit.experiments.scaling`` (``ablation``, ``latent``, ``frontier``).
"""
