"""A handler package as users write them: its own functions, a submodule's re-exported, and imports.

The worker may call ``local`` and ``unlisted`` (its own), ``double`` (re-exported from ``.impl``) and
``which`` (imported from shutil, but listed in ``__all__``); not ``getcwd`` or
``system``, which it merely imported.
"""

from os import getcwd, system  # noqa: F401 - imported, not offered: the allow-list test calls them
from shutil import which

from .impl import double

__all__ = ["local", "double", "which"]


def local(x):
    return x + 1


def unlisted(x):
    return x - 1
