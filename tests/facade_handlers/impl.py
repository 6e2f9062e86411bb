"""The submodule whose function the package re-exports."""


def double(x):
    return x * 2
