"""Model definitions that ship with cxql, so a bundled store's attached model rebuilds after ``pip install``."""
