"""Package discovery that maps the top-level ``data_catalog/`` folder onto ``hydroml._catalog``.

Everything else (metadata, dependencies, extras) is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["hydroml", "hydroml.*"])
    + ["hydroml._catalog", "hydroml._catalog.recipes"],
    package_dir={"hydroml._catalog": "data_catalog"},
)
