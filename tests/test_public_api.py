"""The names ``securefl`` exports: they resolve, ``dir`` lists them, each is documented, docs/api.md is current."""

import dataclasses
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import securefl
import securefl.errors

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", securefl.__all__)
def test_every_public_name_resolves_to_the_object_of_its_module(name):
    module = importlib.import_module(securefl._EXPORTS[name])

    value = getattr(securefl, name)

    assert value is getattr(module, name)
    assert getattr(securefl, name) is value  # cached, the same object on a second look-up


def test_all_and_the_lazy_table_name_the_same_names_in_the_same_order():
    assert list(securefl._EXPORTS) == securefl.__all__
    assert len(set(securefl.__all__)) == len(securefl.__all__)


def test_dir_lists_every_public_name():
    listed = dir(securefl)

    assert set(securefl.__all__) <= set(listed)
    assert "__version__" in listed
    assert listed == sorted(listed)


def test_every_exception_class_of_the_errors_module_is_exported():
    classes = {
        name
        for name, value in vars(securefl.errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == "securefl.errors"
    }

    assert classes, "securefl.errors defines no exception class"
    assert classes <= set(securefl.__all__)


def test_an_unknown_attribute_raises_attribute_error_naming_the_module():
    with pytest.raises(AttributeError, match=r"module 'securefl' has no attribute 'NoSuchName'"):
        securefl.NoSuchName  # noqa: B018

    assert not hasattr(securefl, "secure_aggregator")


def _own_docstring(value):
    doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
    if not isinstance(doc, str) or not doc.strip():
        return ""
    if inspect.isclass(value) and dataclasses.is_dataclass(value):
        generated = value.__name__ + str(inspect.signature(value)).replace(" -> None", "")
        if doc == generated:  # what dataclasses writes when the class has none
            return ""
    return doc


@pytest.mark.parametrize("name", securefl.__all__)
def test_every_public_name_has_its_own_docstring(name):
    value = getattr(securefl, name)

    assert _own_docstring(value), f"securefl.{name} has no docstring"


def test_the_api_reference_page_is_what_the_docstrings_give():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    completed = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "api_reference.py"), "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
