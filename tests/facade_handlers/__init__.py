"""A handler package as users write them: its own functions, a submodule's re-exported, and imports.

The worker may call ``local`` and ``unlisted`` (its own), ``double`` (re-exported from ``.impl``) and
``which`` (imported from shutil, but listed in ``__all__``); not ``getcwd`` or
``system``, which it merely imported. ``triple`` (a partial) and ``predict`` (a model's method) it built here.
"""

import functools
import operator
from os import getcwd, system  # noqa: F401 - imported, not offered: the allow-list test calls them
from shutil import which

from .impl import Model, double

__all__ = ["local", "double", "which"]


def local(x):
    return x + 1


def unlisted(x):
    return x - 1


# Built here from other modules' code: still the module's own handlers.
triple = functools.partial(operator.mul, 3)
predict = Model(3).predict
