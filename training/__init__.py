"""Data and helpers for training a tiny Infinity text-to-image model on CPU."""
