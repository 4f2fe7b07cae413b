from __future__ import annotations

import inspect

import pytest

import anybus
import anybus.testing


def test_all_is_sorted_and_complete() -> None:
    # importing them sets them on the package
    submodules = {"testing", "redis", "postgres", "otel"}
    public = {name for name in dir(anybus) if not name.startswith("_")} - submodules
    assert set(anybus.__all__) == public | {"__version__"}
    assert list(anybus.__all__) == sorted(anybus.__all__)


@pytest.mark.parametrize("name", [n for n in anybus.__all__ if n != "__version__"])
def test_public_name_is_importable_and_documented(name: str) -> None:
    obj = getattr(anybus, name)
    assert obj.__module__ == "anybus", f"{name} shows as {obj.__module__}"
    assert inspect.getdoc(obj), f"{name} has no docstring"
    if inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not callable(member):
                continue
            assert inspect.getdoc(member), f"{name}.{attr} has no docstring"


def test_testing_helpers_are_documented() -> None:
    for name in anybus.testing.__all__:
        assert inspect.getdoc(getattr(anybus.testing, name))


def test_version_is_a_string() -> None:
    assert isinstance(anybus.__version__, str)
    assert anybus.__version__
