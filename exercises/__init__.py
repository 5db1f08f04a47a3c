"""Exercises for the minidit chapters (generated)."""
