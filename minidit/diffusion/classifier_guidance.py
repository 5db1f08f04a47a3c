"""Classifier guidance (Dhariwal & Nichol 2021): steer sampling with the gradient of a classifier.

Classifier-free guidance (``guidance.py``, what DiT uses) needs nothing but the diffusion model.
Classifier guidance, its predecessor, needs a second network: a classifier ``p_phi(y | x_t, t)``
trained on NOISY inputs. Bayes' rule splits the conditional score into the model's score and the
classifier's::

    grad_x log p(x_t | y) = grad_x log p(x_t) + grad_x log p_phi(y | x_t)

The sampler receives the second term from a ``cond_fn(x_t, t, **model_kwargs)`` that returns
``s * grad_x log p_phi(y | x_t)`` (shape of x_t; ``s`` the guidance scale, folded in by the
caller) and uses it in one of two ways, the official names and formulas:

* ``condition_mean`` (DDPM, ``p_sample``; Sohl-Dickstein et al. 2015): shift the Gaussian step's
  mean by its covariance times the gradient, ``mu' = mu + Sigma * grad``.
* ``condition_score`` (DDIM, ``ddim_sample``; Song et al. 2021): eps is a scaled score,
  ``eps = -sqrt(1 - alpha_bar_t) grad_x log p(x_t)``, so conditioning the score means
  ``eps' = eps - sqrt(1 - alpha_bar_t) * grad``; x_0 and the mean are re-derived from eps'.

The samplers call ``cond_fn`` inside ``torch.no_grad()`` (as the official loops do), so a
``cond_fn`` must switch gradients back on itself; ``classifier_cond_fn`` builds one from a
classifier. With a respaced chain ``cond_fn`` sees the ORIGINAL timesteps, like the model (the
official code wraps it the same way).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .gaussian import predict_eps_from_x0, predict_x0_from_eps


def guided_mean(mean: torch.Tensor, variance: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The conditioned DDPM mean: ``mu' = mu + sigma_t^2 * grad`` (shapes broadcast)."""
    # mu' = mu + Sigma grad_x log p_phi(y | x_t)
    return mean + variance * grad


def guided_eps(eps: torch.Tensor, alpha_bar_t: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The conditioned noise prediction: ``eps' = eps - sqrt(1 - alpha_bar_t) * grad``."""
    # eps' = eps - sqrt(1 - alpha_bar_t) grad_x log p_phi(y | x_t)
    return eps - torch.sqrt(1 - alpha_bar_t) * grad


def classifier_cond_fn(classifier, scale: float = 1.0):
    """A ``cond_fn`` from a noise-aware classifier ``classifier(x_t, t) -> logits (N, K)``.

    Returns ``cond_fn(x, t, y, **ignored) = scale * grad_x log softmax(classifier(x, t))[y]``,
    the label ``y`` (N,) coming from ``model_kwargs`` like the model's; other model_kwargs (e.g.
    ``cfg_scale``) are ignored. Gradients are switched on inside, so it works in the samplers'
    ``no_grad`` loops.
    """
    def cond_fn(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor = None, **_ignored) -> torch.Tensor:
        if y is None:
            raise ValueError("classifier guidance needs the target labels: pass model_kwargs=dict(y=...)")
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            # log p_phi(y | x_t): (N, K) -> (N,)
            log_probs = F.log_softmax(classifier(x_in, t), dim=-1)
            selected = log_probs[torch.arange(len(y), device=y.device), y]
            # the sum's gradient is every example's own gradient (examples are independent)
            grad, = torch.autograd.grad(selected.sum(), x_in)
        return grad * scale
    return cond_fn


class ClassifierGuidanceMethods:
    """``condition_mean`` and ``condition_score`` of ``GaussianDiffusion`` (mixed in)."""

    def _run_cond_fn(self, cond_fn, x: torch.Tensor, t: torch.Tensor, model_kwargs) -> torch.Tensor:
        """``cond_fn(x, timestep_map[t], **model_kwargs)``, checked to have x's shape."""
        grad = cond_fn(x, self._original_t(t), **(model_kwargs or {}))
        if not torch.is_tensor(grad) or grad.shape != x.shape:
            got = tuple(grad.shape) if torch.is_tensor(grad) else type(grad).__name__
            raise ValueError(f"cond_fn must return the gradient grad_x log p(y | x_t), shaped like "
                             f"x {tuple(x.shape)}; got {got}")
        return grad

    def condition_mean(self, cond_fn, p_mean_var: dict, x: torch.Tensor, t: torch.Tensor,
                       model_kwargs=None) -> torch.Tensor:
        """The DDPM step's mean shifted by the classifier gradient: ``mean + variance * grad``.

        ``p_mean_var`` is ``p_mean_variance``'s dict for ``x`` at ``t``. Returns the new mean
        (dtype of the old one; computed in at least float32, as the official code upcasts).
        """
        grad = self._run_cond_fn(cond_fn, x, t, model_kwargs)
        mean = p_mean_var["mean"]
        acc = torch.promote_types(mean.dtype, torch.float32)
        # mu' = mu + Sigma grad
        return guided_mean(mean.to(acc), p_mean_var["variance"].to(acc), grad.to(acc)).to(mean.dtype)

    def condition_score(self, cond_fn, p_mean_var: dict, x: torch.Tensor, t: torch.Tensor,
                        model_kwargs=None) -> dict:
        """What ``p_mean_variance`` would return had the model's score been conditioned.

        Returns a copy of ``p_mean_var`` with ``pred_xstart`` and ``mean`` re-derived from
        ``eps' = eps - sqrt(1 - alpha_bar_t) * grad`` (``variance`` unchanged). As in the
        official code, neither ``clip_denoised`` nor ``denoised_fn`` is applied again.
        """
        grad = self._run_cond_fn(cond_fn, x, t, model_kwargs)
        alpha_bar_t = self._extract("alphas_cumprod", t, x.ndim)
        # eps = (sqrt(1 / alpha_bar_t) x_t - x_0) / sqrt(1 / alpha_bar_t - 1)
        eps = predict_eps_from_x0(x, alpha_bar_t, p_mean_var["pred_xstart"])
        # eps' = eps - sqrt(1 - alpha_bar_t) grad
        eps = guided_eps(eps, alpha_bar_t, grad)
        out = dict(p_mean_var)
        # x_0' = sqrt(1 / alpha_bar_t) x_t - sqrt(1 / alpha_bar_t - 1) eps'
        pred_xstart = predict_x0_from_eps(x, alpha_bar_t, eps)
        # mean' = posterior mean of q(x_{t-1} | x_t, x_0')
        mean, _ = self._posterior(pred_xstart, x, t)
        out["pred_xstart"], out["mean"] = pred_xstart.to(x.dtype), mean.to(x.dtype)
        return out
