"""minidit: an annotated re-implementation of DiT (Peebles & Xie, ICCV 2023)."""
