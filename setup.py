"""The one compiled part: the collector's receiver check and its workers' reader (collector/_otlpscan.c).

Optional: where no C compiler is at hand the build goes on without it and the collector checks
and reads requests with protobuf and Python (the collector's _convert.check and convert), with the
same answers.
"""

from setuptools import Extension, setup
from setuptools.config.pyprojecttoml import read_configuration

# The package the collector/ folder is installed as, from pyproject's package-dir: one name, one place.
_PACKAGE_DIRS = read_configuration("pyproject.toml")["tool"]["setuptools"]["package-dir"]
_COLLECTOR = next(package for package, folder in _PACKAGE_DIRS.items() if folder == "collector")

setup(
    ext_modules=[
        Extension(
            f"{_COLLECTOR}._otlpscan",
            ["collector/_otlpscan.c"],
            optional=True,
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
