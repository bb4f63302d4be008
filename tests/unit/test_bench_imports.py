"""Every benchmark and script module imports: they are run by hand, not by the other tests."""

import importlib
import pkgutil

import pytest

import bench
import scripts

MODULES = [
    module.name
    for package in (bench, scripts)
    for module in pkgutil.iter_modules(package.__path__, f"{package.__name__}.")
]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
