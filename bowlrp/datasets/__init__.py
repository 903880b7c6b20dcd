"""Data sets the project generates itself (nothing is downloaded)."""
