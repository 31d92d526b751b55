"""prunetune: gradual structured pruning (the Prune-Tune Loop) that writes stock Hugging Face checkpoints."""

__version__ = "0.1.0"
