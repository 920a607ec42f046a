import json

import pytest

from securefl import jsonout
from securefl.cli import main


def _run_json(capsys, *arguments):
    assert main(["run", *arguments, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_run_json_reports_the_required_fields(capsys):
    summary = _run_json(capsys, "--protocol", "secret-sharing", "--clients", "4", "--rounds", "2", "--seed", "3")
    for key in ("protocol", "secure", "rounds", "clients", "final_accuracy", "bytes_up_per_client_per_round",
                "seconds_per_round", "server_saw_individual_updates"):
        assert key in summary
    assert summary["protocol"] == "secret-sharing" and summary["secure"] is True
    assert summary["server_saw_individual_updates"] is False
    assert summary["rounds"] == 2 and len(summary["history"]) == 2
    assert summary["bytes_up_per_client_per_round"] > 4 * 4000


def test_plaintext_is_labelled_insecure_and_audited(capsys):
    summary = _run_json(capsys, "--protocol", "plaintext", "--clients", "3", "--rounds", "1")
    assert summary["secure"] is False
    assert summary["server_saw_individual_updates"] is True


def test_table_output_names_the_baseline_insecure(capsys):
    assert main(["run", "--protocol", "plaintext", "--clients", "3", "--rounds", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "INSECURE" in out and "server saw individual updates  YES" in out


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["run", "--protocol", "nope"], "invalid choice: 'nope' (choose from"),
        (["run", "--clients", "0"], "expected a positive integer; found 0"),
        (["run", "--dropout", "1.5"], "expected a probability in [0, 1); found 1.5"),
        (["run", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_bad_input_gives_one_line_error(capsys, arguments, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert expected in error
    assert len(error.strip().splitlines()) == 1


def test_configuration_errors_are_one_line(capsys):
    assert main(["run", "--protocol", "secret-sharing", "--clients", "3000", "--rounds", "1", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "max_clients" in error and len(error.strip().splitlines()) == 1


def test_json_is_strict_and_an_infinite_epsilon_is_the_string_inf(capsys):
    code = main(["run", "--protocol", "secret-sharing", "--clients", "4", "--rounds", "1", "--hidden", "8",
                 "--dp", "central", "--noise-multiplier", "0", "--json", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Infinity" not in out and "NaN" not in out
    assert jsonout.loads(out)["epsilon"] == "inf"


@pytest.mark.parametrize("protocol", ["secagg", "secagg+", "secret-sharing", "paillier"])
def test_a_cohort_of_one_is_refused_up_front(capsys, protocol):
    options = ["--neighbors", "2"] if protocol == "secagg+" else []
    assert main(["run", "--protocol", protocol, *options, "--clients", "1", "--rounds", "1", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "min_clients=2" in error


def test_without_a_seed_the_run_says_it_drew_from_the_os(capsys):
    summary = _run_json(capsys, "--protocol", "plaintext", "--clients", "3", "--rounds", "1", "--hidden", "8")
    assert summary["seed"] is None and summary["config"]["seed"] is None
    assert summary["seed_source"] == "os-entropy-pool"

    assert main(["run", "--protocol", "plaintext", "--clients", "3", "--rounds", "1", "--hidden", "8", "--quiet"]) == 0
    assert "OS entropy pool" in capsys.readouterr().out


def test_a_seed_reaches_the_config_and_reproduces_the_run(capsys):
    arguments = ("--protocol", "secagg", "--clients", "4", "--rounds", "2", "--hidden", "8", "--seed", "5",
                 "--dp", "central", "--noise-multiplier", "0.5")
    first, second = _run_json(capsys, *arguments), _run_json(capsys, *arguments)
    assert first["seed"] == first["config"]["seed"] == 5 and first["seed_source"] == "given"
    assert first["final_accuracy"] == second["final_accuracy"] and first["epsilon"] == second["epsilon"]
    assert [r["accuracy"] for r in first["history"]] == [r["accuracy"] for r in second["history"]]


def test_a_cohort_of_one_is_refused_up_front_under_dp_too(capsys):
    for dp in ("central", "distributed"):
        code = main(["run", "--protocol", "secagg", "--clients", "1", "--rounds", "1", "--quiet", "--dp", dp,
                     "--noise-multiplier", "1"])
        error = capsys.readouterr().err
        assert code == 2 and len(error.strip().splitlines()) == 1 and "min_clients=2" in error


def test_every_figure_of_the_table_is_in_the_json(capsys):
    arguments = ["--protocol", "secret-sharing", "--clients", "4", "--rounds", "1", "--hidden", "8", "--seed", "0"]
    summary = _run_json(capsys, *arguments)
    assert main(["run", *arguments, "--quiet"]) == 0
    table = capsys.readouterr().out
    assert summary["description"] in table and f"{summary['final_accuracy']:.4f}" in table
    assert f"{summary['bytes_up_per_client_per_round']:,.0f} B" in table
    assert f"{summary['dropped']} / {summary['rounds_aborted']}" in table


def test_run_validated_sharing_reports_rejections_and_clipping(capsys):
    summary = _run_json(capsys, "--protocol", "validated-sharing", "--norm-bound", "5", "--clients", "3",
                        "--rounds", "1", "--local-epochs", "1", "--seed", "0")
    assert summary["protocol"] == "validated-sharing" and "<= 5" in summary["description"]
    assert summary["rejected"] == {} and summary["l2_clipped_updates"] == 0
    assert summary["history"][0]["rejected"] == {}


@pytest.mark.parametrize(("argv", "message"), [
    (["--protocol", "secret-sharing", "--norm-bound", "3"], "--norm-bound applies to validated-sharing only"),
    (["--protocol", "validated-sharing", "--norm-bound", "-1"], "--norm-bound"),
    (["--protocol", "validated-sharing", "--norm-bound", "inf"], "--norm-bound"),
    (["--protocol", "validated-sharing", "--norm-bound", "nan"], "--norm-bound"),
])
def test_run_refuses_a_bad_norm_bound(capsys, argv, message):
    try:
        code = main(["run", *argv, "--clients", "3", "--rounds", "1", "--quiet"])
    except SystemExit as refused:  # argparse's own refusal of the value
        code = refused.code
    assert code == 2
    assert message in capsys.readouterr().err
