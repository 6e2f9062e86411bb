"""A handler module that logs, then dies hard while importing (no exception, no refused)."""

import logging
import os

logging.getLogger("early_crash").warning("CUDA not found, falling back to CPU")
os._exit(3)
