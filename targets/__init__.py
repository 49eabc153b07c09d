"""Data only: the shipped target TOML files (``importlib.resources.files("targets")``)."""
