"""The one compiled part: the collector's receiver check (collector/_otlpscan.c).

Optional: where no C compiler is at hand the build goes on without it and the collector checks
requests in Python (runmeter.collector._convert.check), with the same answers.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "runmeter.collector._otlpscan",
            ["collector/_otlpscan.c"],
            optional=True,
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
