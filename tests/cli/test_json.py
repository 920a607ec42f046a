"""Every ``--json`` output of every command is one strict JSON document with one convention.

The convention (securefl/jsonout.py, docs/index.md): ``schema_version`` first;
no NaN / Infinity tokens; an infinite number is the string ``"inf"``; ``null``
only for a field that does not apply (listed in ``NOT_APPLICABLE`` with when);
``dropped`` is a count of clients and ``dropouts`` the map client -> phase.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from securefl import jsonout
from securefl.cli import main

# Every field that may be null, and what null means there: "not applicable", never "infinite" or "failed".
NOT_APPLICABLE = {
    "seed": "no --seed: every random choice from the OS entropy pool",
    "epsilon": "no differential privacy",
    "server_epsilon": "no bound against the server (no DP, or central DP)",
    "target_epsilon": "the noise multiplier was given, not calibrated",
    "delta": "no differential privacy",
    "noise_multiplier": "no differential privacy",
    "clip": "no differential privacy",
    "sample_rate": "no differential privacy",
    "accountant": "no differential privacy",
    "l2_clip_fraction": "no differential privacy",
    "abort_reason": "the round was not aborted",
    "server_saw_individual_updates": "the round was aborted: nothing was released",
    "cosine": "the probe had no message it could read as numbers (its 'not_applicable' says why)",
    "psnr": "the probe had no message it could read as numbers (its 'not_applicable' says why)",
    "model_parameters": "no --model-params: each federation runs its default model",
}

NUMBER_OR_INFINITY = ("epsilon", "server_epsilon", "target_epsilon", "optimal_order")


def _refuse(token: str) -> Any:
    raise AssertionError(f"non-standard JSON token {token}")


def _fields(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every field of every object in ``value``, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", key, item
            yield from _fields(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _fields(item, f"{path}[{index}]")


def check_document(text: str, *, shapes: bool = True) -> dict[str, Any]:
    """Parse ``text`` strictly and assert the one convention (``shapes``: of ``dropped`` / ``dropouts`` too)."""
    document = json.loads(text, parse_constant=_refuse)
    assert isinstance(document, dict)
    assert next(iter(document)) == "schema_version" and document["schema_version"] == jsonout.SCHEMA_VERSION
    for path, key, value in _fields(document):
        if value is None:
            assert key in NOT_APPLICABLE, f"{path} is null but null means only 'not applicable'"
        if key in NUMBER_OR_INFINITY:
            assert value is None or value == jsonout.INFINITY or isinstance(value, (int, float)), path
        if isinstance(value, str) and value in ("Infinity", "NaN", "-Infinity"):
            raise AssertionError(f"{path}: {value!r} is not the documented spelling")
        if key == "dropouts" and shapes:
            assert isinstance(value, dict), f"{path}: dropouts is the map client -> phase; a count is 'dropped'"
        if key == "dropped" and shapes:
            assert isinstance(value, int) and not isinstance(value, bool), path
    return document


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict[str, Any], str]:
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    return check_document(captured.out), captured.err


RUN = ("run", "--clients", "4", "--rounds", "1", "--hidden", "8", "--json", "--quiet")


def test_run_without_dp_or_seed(capsys: pytest.CaptureFixture[str]) -> None:
    summary, _ = _main(capsys, *RUN, "--protocol", "secagg", "--dropout", "0.4")
    assert summary["dp"] == "none" and summary["epsilon"] is None and summary["seed"] is None
    assert summary["dropped"] == sum(len(r["dropouts"]) for r in summary["history"])
    assert "dropouts" not in summary  # the per-round map lives in the history


def test_run_with_an_infinite_epsilon_writes_inf_not_null(capsys: pytest.CaptureFixture[str]) -> None:
    summary, _ = _main(capsys, *RUN, "--seed", "0", "--dp", "central", "--noise-multiplier", "0")
    assert summary["epsilon"] == "inf" and jsonout.number(summary["epsilon"]) == math.inf
    assert summary["history"][-1]["epsilon"] == "inf"
    assert summary["target_epsilon"] is None  # z was given: no target applies


def test_run_with_distributed_dp(capsys: pytest.CaptureFixture[str]) -> None:
    summary, _ = _main(capsys, *RUN, "--protocol", "secagg", "--seed", "1", "--dp", "distributed",
                       "--epsilon", "8", "--sample-rate", "0.5")
    assert summary["dp"] == "distributed" and 0 < summary["epsilon"] <= 8
    assert isinstance(summary["server_epsilon"], float)


@pytest.mark.parametrize(
    "argv",
    [
        ["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5"],
        ["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5",
         "--accountant", "pld", "--discretization", "1e-3"],
        ["epsilon", "--noise-multiplier", "1.2", "--sample-rate", "0.3", "--steps", "20", "--delta", "1e-5",
         "--mechanism", "skellam", "--dimension", "1210", "--scale", "2000"],
        ["calibrate", "--epsilon", "3", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5"],
    ],
)
def test_privacy_commands(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    result, _ = _main(capsys, *argv, "--json")
    assert isinstance(result["epsilon"], float)


def test_epsilon_of_no_noise_is_inf(capsys: pytest.CaptureFixture[str]) -> None:
    result, _ = _main(capsys, "epsilon", "--noise-multiplier", "0", "--sample-rate", "0.01", "--steps", "10",
                      "--delta", "1e-5", "--json")
    assert result["epsilon"] == "inf"


@pytest.fixture(scope="module")
def compare_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["compare", "--clients", "2", "--dp-clients", "10", "--rounds", "1", "--dp-rounds", "1",
                     "--seeds", "1", "--protocols", "plaintext,paillier,secagg+distributed-dp", "--out", str(out),
                     "--quiet", "--json"])
    assert code == 0
    assert stdout.getvalue() == (out / "results.json").read_text(encoding="utf-8")
    return stdout.getvalue()


def test_compare_is_strict_with_a_schema_version_and_nulls_only_for_not_applicable(compare_output: str) -> None:
    data = check_document(compare_output, shapes=False)
    rows = {row["name"]: row["seeds"][0] for row in data["protocols"]}
    assert rows["plaintext"]["epsilon"] is None and isinstance(rows["secagg+distributed-dp"]["epsilon"], float)


def test_compare_rows_count_dropped_and_say_why_a_probe_does_not_apply(compare_output: str) -> None:
    data = check_document(compare_output)
    rows = {row["name"]: row["seeds"][0] for row in data["protocols"]}
    assert all(isinstance(row["dropped"], int) for row in rows.values())
    probe = rows["paillier"]["probe"]
    assert probe["vectors_attacked"] == 0
    assert probe["messages"]["cosine"] is None and isinstance(probe["messages"]["not_applicable"], str)


# -- the convention itself ---------------------------------------------------------------------------


def test_non_finite_numbers_are_the_strings_float_reads_back() -> None:
    text = jsonout.dumps({"a": math.inf, "b": [-math.inf, math.nan], "c": np.float32(1.5), "d": np.int64(3),
                          "e": (1, None)})
    document = check_document(text)
    assert document == {"schema_version": jsonout.SCHEMA_VERSION, "a": "inf", "b": ["-inf", "nan"], "c": 1.5,
                        "d": 3, "e": [1, None]}
    assert [jsonout.number(v) for v in ("inf", "-inf")] == [math.inf, -math.inf]
    assert math.isnan(jsonout.number("nan") or 0.0) and jsonout.number(None) is None


def test_loads_refuses_the_non_standard_tokens() -> None:
    for token in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match=token):
            jsonout.loads(f'{{"epsilon": {token}}}')


def test_a_document_of_another_schema_version_is_refused() -> None:
    assert jsonout.document({"schema_version": jsonout.SCHEMA_VERSION, "x": 1}) == {"schema_version": 1, "x": 1}
    with pytest.raises(ValueError, match="schema_version"):
        jsonout.document({"schema_version": 99})


def test_number_refuses_an_undocumented_string() -> None:
    with pytest.raises(ValueError, match="Infinity"):
        jsonout.number("Infinity")
