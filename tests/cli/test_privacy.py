"""``securefl epsilon`` / ``securefl calibrate`` through a stand-in top-level parser."""

from __future__ import annotations

import argparse
import json

import pytest

from securefl.cli.privacy import register


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="securefl")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_epsilon_rdp_prints_epsilon_and_order(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["epsilon", "--noise-multiplier", "1.0", "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "epsilon = 2.1" in out and "optimal RDP order = " in out


def test_epsilon_json_pld(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        ["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5",
         "--accountant", "pld", "--discretization", "1e-3", "--json"]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["accountant"] == "pld" and 0.5 < result["epsilon"] < 1.0


def test_calibrate_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["calibrate", "--epsilon", "3", "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["epsilon"] <= 3.0 and 0.5 < result["noise_multiplier"] < 1.5


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["epsilon", "--noise-multiplier", "-1", "--sample-rate", "0.1", "--steps", "10", "--delta", "1e-5"], "-1.0"),
        (["epsilon", "--noise-multiplier", "1", "--sample-rate", "0", "--steps", "10", "--delta", "1e-5"], "0.0"),
        (["epsilon", "--noise-multiplier", "1", "--sample-rate", "1.5", "--steps", "10", "--delta", "1e-5"], "1.5"),
        (["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "0", "--delta", "1e-5"], "0"),
        (["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "10", "--delta", "1"], "1.0"),
        (["calibrate", "--epsilon", "1", "--sample-rate", "0.1", "--steps", "10", "--delta", "0"], "0.0"),
        (["calibrate", "--epsilon", "-2", "--sample-rate", "0.1", "--steps", "10", "--delta", "1e-5"], "-2.0"),
    ],
)
def test_bad_values_give_one_line_and_exit_2(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(("securefl epsilon: error: ", "securefl calibrate: error: "))
    assert f"found {named}" in lines[0]
