"""The submodule whose function the package re-exports."""


def double(x):
    return x * 2


class Model:
    """A fitted model, as handler modules build one at import."""

    def __init__(self, factor):
        self.factor = factor

    def predict(self, x):
        return x * self.factor
