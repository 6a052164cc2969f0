"""Build the optional C extension; everything else is in pyproject.toml.

``optional=True``: without a compiler the package installs with its pure-Python
codec (``logstore.__speedups__ == "pure"``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "logstore._speedups",
            sources=["logstore/_speedups.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wno-missing-braces"],
            optional=True,
        )
    ]
)
