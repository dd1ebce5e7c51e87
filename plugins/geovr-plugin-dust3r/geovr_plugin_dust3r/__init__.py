"""geovr plugin: the DUSt3R teacher (torch-free at import)."""
