"""Tasks and their data: the GLUE registry, sources, subsets, tokenisation, batching, metrics."""
