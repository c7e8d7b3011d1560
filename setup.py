"""The compiled parts: the collector's receiver check and its workers' reader (collector/_otlpscan.c),
the row builder's attribute maps (exporter/_speedups.c) and the Native block writer (exporter/_blocks.c).

All optional: where no C compiler is at hand the build goes on without them and the collector
checks and reads requests with protobuf and Python (the collector's _convert.check and convert),
rows are built in Python (exporter/_rows.py's attr_map) and encoded by clickhouse-connect, with the same answers.
"""

from setuptools import Extension, setup
from setuptools.config.pyprojecttoml import read_configuration

# The packages the folders are installed as, from pyproject's package-dir: one name, one place.
_PACKAGE_DIRS = read_configuration("pyproject.toml")["tool"]["setuptools"]["package-dir"]
_PACKAGE_OF = {folder: package for package, folder in _PACKAGE_DIRS.items()}


def _extension(source: str) -> Extension:
    folder, _, file = source.partition("/")
    return Extension(
        f"{_PACKAGE_OF[folder]}.{file.removesuffix('.c')}",
        [source],
        optional=True,
        extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    )


setup(ext_modules=[_extension("collector/_otlpscan.c"), _extension("exporter/_speedups.c"), _extension("exporter/_blocks.c")])
