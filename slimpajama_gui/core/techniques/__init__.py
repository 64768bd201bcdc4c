"""The compression techniques and the one training loop."""
