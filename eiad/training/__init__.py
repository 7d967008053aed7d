"""LoRA fine-tuning: the ``train`` settings, training data, checkpoints and resume, the Trainer
run, the launcher for several processes, and merging an adapter into its base model."""
