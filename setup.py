"""Builds the optional C fast path of the ETF decoder; pyproject.toml holds everything else."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tether._etf_c",
            ["src/tether/_etf_c.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            optional=True,  # without a compiler tether still works, in pure Python
        )
    ]
)
