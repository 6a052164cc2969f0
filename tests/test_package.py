"""The package as users meet it: the pure-codec warning and the published metadata."""

from __future__ import annotations

import importlib.metadata
import json
import logging

import pytest

import logstore

from .conftest import REPO, child_env, run_python

# A child interpreter in which ``logstore._speedups`` cannot be imported, as after a
# build without a compiler; it reports every warning raised while importing the package.
FAILED_BUILD = """
import json, sys, warnings
sys.modules["logstore._speedups"] = None  # any import of it raises ImportError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import logstore, logstore.batch, logstore.partitioner, logstore.cli
print(json.dumps([[w.category.__name__, str(w.message)] for w in caught]))
print(logstore.__speedups__)
"""


MESSAGE = (
    "logstore: the compiled codec logstore._speedups could not be imported "
    "(import of logstore._speedups halted; None in sys.modules); using the slower "
    "pure-Python codec. Reinstall with a C compiler and the Python headers, or set "
    "LOGSTORE_PURE=1 to choose the pure codec."
)


def _without_pure() -> dict[str, str]:
    env = child_env()
    env.pop("LOGSTORE_PURE", None)
    return env


def test_a_failed_build_warns_once_and_falls_back_to_the_pure_codec() -> None:
    done = run_python(FAILED_BUILD, env=_without_pure())
    assert done.returncode == 0, done.stderr
    caught, codec = done.stdout.splitlines()
    assert json.loads(caught) == [["PureCodecWarning", MESSAGE]]
    assert codec == "pure"


def test_the_warning_is_printed_once_on_stderr() -> None:
    code = 'import sys; sys.modules["logstore._speedups"] = None; import logstore, logstore.batch'
    done = run_python(code, env=_without_pure())
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("PureCodecWarning: " + MESSAGE) == 1
    assert done.stderr.count("PureCodecWarning") == 1


def test_logstore_pure_chooses_the_pure_codec_without_a_warning() -> None:
    done = run_python(FAILED_BUILD, env=child_env(LOGSTORE_PURE="1"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "pure"]
    assert done.stderr == ""


def test_the_warning_is_a_public_logstore_error_and_user_warning() -> None:
    assert "PureCodecWarning" in logstore.__all__
    assert issubclass(logstore.PureCodecWarning, logstore.LogStoreError)
    assert issubclass(logstore.PureCodecWarning, UserWarning)


@pytest.mark.skipif(logstore.__speedups__ != "compiled", reason="the compiled codec is not active")
def test_the_compiled_codec_imports_without_a_warning() -> None:
    code = "import warnings; warnings.simplefilter('error'); import logstore; print(logstore.__speedups__)"
    done = run_python(code, env=_without_pure())
    assert (done.returncode, done.stdout, done.stderr) == (0, "compiled\n", "")


def test_the_installed_metadata() -> None:
    meta = importlib.metadata.metadata("logstore")
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Author"] == "logstore developers"
    # dev and bench are dependency groups, not extras
    assert set(meta.get_all("Provides-Extra") or []) == {"lz4", "snappy", "kafka", "serve"}
    requires = meta.get_all("Requires-Dist") or []
    assert [r for r in requires if "serve" in r] == [
        'kio<0.7,>=0.6.5; python_version >= "3.11" and extra == "serve"'
    ]
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert sorted(urls) == ["Documentation", "Homepage", "Issues", "Source"]
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
    assert (REPO / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]


def test_the_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("logstore").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)
