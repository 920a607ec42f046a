import json

import pytest

from securefl.cli import main
from securefl.evaluation.compare import contender_names

FIELDS = {
    "name", "protocol", "description", "secure", "dp", "threat_model", "final_accuracy", "accuracy_per_round",
    "epsilon", "noise_multiplier", "bytes_up_per_client_per_round", "bytes_down_per_client_per_round",
    "client_seconds_per_round", "server_seconds_per_round", "dropped", "rounds_aborted", "rounds_completed",
    "server_saw_individual_updates", "probe", "seconds",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code = main(["compare", "--clients", "4", "--rounds", "2", "--out", str(out), "--quiet", "--json"])
    assert code == 0
    return out


def test_results_json_has_every_protocol_row_and_field(report):
    data = json.loads((report / "results.json").read_text())
    assert [row["name"] for row in data["protocols"]] == contender_names()
    assert data["settings"]["clients"] == 4 and data["settings"]["rounds"] == 2
    for row in data["protocols"]:
        assert FIELDS <= set(row)
        assert len(row["accuracy_per_round"]) == 2
        assert set(row["probe"]) == {"messages", "aggregate", "chance", "vectors_attacked"}
        assert (row["epsilon"] is not None) == (row["dp"] != "none")


def test_probe_separates_plaintext_from_every_secure_protocol(report):
    rows = {row["name"]: row for row in json.loads((report / "results.json").read_text())["protocols"]}
    plaintext = rows.pop("plaintext")
    assert plaintext["secure"] is False
    assert plaintext["probe"]["messages"]["cosine"] > 0.99
    assert plaintext["server_saw_individual_updates"] is True
    for name, row in rows.items():
        assert row["secure"] is True, name
        seen = row["probe"]["messages"]
        if row["probe"]["vectors_attacked"] == 0:  # ciphertexts only: nothing to read, and the JSON says why
            assert seen["cosine"] is None and seen["not_applicable"], name
        else:
            assert seen["cosine"] < plaintext["probe"]["messages"]["cosine"] - 0.3, name
        assert row["server_saw_individual_updates"] is False, name


def test_report_and_plots_are_written(report):
    markdown = (report / "report.md").read_text()
    for name in contender_names():
        assert f"### {name}" in markdown
    for plot in ("accuracy.png", "overhead.png", "reconstructions.png"):
        data = (report / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000


def test_unknown_protocol_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--protocols", "plaintext,bogus"])
    error = capsys.readouterr().err
    assert "unknown protocol(s) bogus" in error and len(error.strip().splitlines()) == 1
