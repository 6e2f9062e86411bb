"""Builds the optional C speedups (ETF codec fast paths, bulk copies); pyproject.toml holds everything else."""

from glob import glob

from setuptools import Extension, setup

SRC = "src/tether/_speedups_src"

setup(
    ext_modules=[
        Extension(
            "tether._speedups",
            sorted(glob(f"{SRC}/*.c")),
            depends=sorted(glob(f"{SRC}/*.h")),  # rebuilt when a header changes
            extra_compile_args=[
                "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                "-fvisibility=hidden",  # one module across several files: only PyInit is exported
            ],
            optional=True,  # without a compiler tether still works, in pure Python
        )
    ]
)
