"""Shared test settings: quiet threads, headless plots, no downloads."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
