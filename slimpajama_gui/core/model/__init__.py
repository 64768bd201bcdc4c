"""The encoder classifier, Hugging Face checkpoints and config.json, the catalog of models."""
