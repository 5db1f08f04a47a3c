"""minidit: an annotated re-implementation of DiT (Peebles & Xie, ICCV 2023).

``minidit.use_impl("exercises")`` runs the package on your own exercise files (minidit/impl.py);
so does ``MINIDIT_IMPL=exercises`` in the environment, read here when the package is imported.
"""
import os

from minidit.impl import use_impl

__all__ = ["use_impl"]

if os.environ.get("MINIDIT_IMPL"):
    use_impl(os.environ["MINIDIT_IMPL"])
