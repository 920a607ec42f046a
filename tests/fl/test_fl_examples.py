import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "audit"),
    [("fedavg_plaintext.py", "True"), ("fedavg_secret_sharing.py", "False")],
)
def test_example_runs_and_reports_accuracy(script, audit, capsys):
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    accuracy = float(last.split("final test accuracy ")[1].split(";")[0])
    assert accuracy >= 0.90
    assert last.endswith(f"server saw individual updates: {audit}")
