"""Every example script runs and reports what it promises."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *argv: str, monkeypatch, capsys) -> list[str]:
    monkeypatch.setattr("sys.argv", [script, *argv])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    return capsys.readouterr().out.strip().splitlines()


def _final_accuracy(line: str) -> float:
    return float(line.split("final test accuracy ")[1].split(";")[0])


def test_secagg_example(monkeypatch, capsys):
    lines = [line for line in _run("fedavg_secagg.py", monkeypatch=monkeypatch, capsys=capsys) if "final" in line]
    assert len(lines) == 2
    for line in lines:
        assert _final_accuracy(line) >= 0.88
        assert line.endswith("server saw individual updates: False")


def test_paillier_example(monkeypatch, capsys):
    last = _run("fedavg_paillier.py", monkeypatch=monkeypatch, capsys=capsys)[-1]
    assert _final_accuracy(last) >= 0.85
    assert last.endswith("server saw individual updates: False")


def test_central_dp_example(monkeypatch, capsys):
    last = _run("fedavg_central_dp.py", monkeypatch=monkeypatch, capsys=capsys)[-1]
    assert _final_accuracy(last) >= 0.7
    epsilon = float(last.split("epsilon ")[1].split()[0])
    assert 7.9 < epsilon <= 8.0


def test_compare_example(tmp_path, monkeypatch, capsys):
    lines = _run("compare.py", str(tmp_path), monkeypatch=monkeypatch, capsys=capsys)
    assert lines[-1] == f"report written to {tmp_path / 'report.md'}"
    assert (tmp_path / "results.json").exists()
    probes = {
        line.split()[0]: float(line.split("probe on messages ")[1].split()[0])
        for line in lines
        if "probe on messages" in line
    }
    assert probes["plaintext"] > 0.99 and all(value < 0.7 for name, value in probes.items() if name != "plaintext")


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_exercised(script):
    exercised = {"fedavg_secagg.py", "fedavg_paillier.py", "fedavg_central_dp.py", "compare.py",
                 "fedavg_plaintext.py", "fedavg_secret_sharing.py", "own_model.py",  # own_model: tests/fl/
                 "poisoning.py"}
    assert script in exercised, f"examples/{script} has no test"


def test_poisoning_example(monkeypatch, capsys):
    import json

    lines = _run("poisoning.py", "--quick", monkeypatch=monkeypatch, capsys=capsys)
    report = json.loads("\n".join(lines[:-1]))
    runs = report["runs"]
    validated = runs["poisoned_validated_sharing"]
    assert validated["rejected_rounds"] == validated["rounds"] == 5
    assert all(rejected == {"3": "norm-exceeded"} for rejected in validated["rejected"])
    assert abs(validated["final_accuracy"] - runs["clean"]["final_accuracy"]) <= 0.01
    assert runs["poisoned_secret_sharing"]["final_accuracy"] < runs["clean"]["final_accuracy"] - 0.1
    assert lines[-1].startswith("clean accuracy")
