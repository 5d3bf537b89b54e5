"""Fine-tuning a branch's nucleus model from its pathologists' reviews: training pairs, the fine-tune, the comparison, the registration."""
