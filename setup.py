"""Builds the optional C speedups (ETF decoding, bulk copies); pyproject.toml holds everything else."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tether._speedups",
            ["src/tether/_speedups.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            optional=True,  # without a compiler tether still works, in pure Python
        )
    ]
)
