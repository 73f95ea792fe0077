"""Lens-finder architectures: each maps a (N, 3, H, W) g, r, z stamp batch to (N, 1) logits."""
