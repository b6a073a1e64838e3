"""Pre-trained encoders: loading models and tokenizers, and the attention hook AD-DROP uses."""
