"""A handler module that configures logging itself at import (``basicConfig``), as scripts often do."""

import logging

logging.basicConfig(level=logging.INFO)


def log_info(text):
    logging.getLogger("early_basicconfig").info(text.decode() if isinstance(text, bytes) else text)
    return "logged"
