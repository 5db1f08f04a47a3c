"""Solutions for the minidit chapters (generated)."""
