"""A handler module whose logger drops some records by a filter, and one that does not propagate."""

import logging


class _NoSecrets(logging.Filter):
    def filter(self, record):
        return "secret" not in record.getMessage()


log = logging.getLogger("early_filtered")
log.addFilter(_NoSecrets())
log.warning("secret token=abc123")
log.warning("a public warning")
quiet = logging.getLogger("early_filtered.quiet")
quiet.propagate = False
quiet.warning("kept to itself")


def ping():
    return "pong"
