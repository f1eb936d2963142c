"""Code templates, one package per domain."""
