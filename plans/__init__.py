"""Bluesky plans for compute-in-memory chips (programming, characterization, inference)."""
