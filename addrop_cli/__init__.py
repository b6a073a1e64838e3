"""addrop: fine-tune language models on GLUE with AD-DROP and the methods it is compared with."""

__version__ = "0.1.0"
