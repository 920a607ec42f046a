import json
import math

import pytest

from securefl.cli import main
from securefl.evaluation.compare import ROW_PARTS, contender_names, spread
from securefl.evaluation.report import format_spread

ROW_FIELDS = {
    "name", "protocol", "description", "secure", "dp", "threat_model", "federation", "summary", "seeds",
    "server_saw_individual_updates",
}
SEED_FIELDS = {
    "seed", "final_accuracy", "accuracy_per_round", "epsilon", "server_epsilon", "noise_multiplier",
    "bytes_up_per_client_per_round", "bytes_down_per_client_per_round", "round_seconds", "dropped",
    "rounds_aborted", "rounds_completed", "server_saw_individual_updates", "probe", "seconds", "seconds_by_part",
    "unaccounted_seconds",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code = main(["compare", "--clients", "4", "--dp-clients", "12", "--rounds", "2", "--dp-rounds", "2",
                 "--seeds", "2", "--out", str(out), "--quiet", "--json"])
    assert code == 0
    return out


def rows_of(report):
    return {row["name"]: row for row in json.loads((report / "results.json").read_text())["protocols"]}


def test_results_json_has_every_protocol_row_and_field_at_every_seed(report):
    data = json.loads((report / "results.json").read_text())
    assert [row["name"] for row in data["protocols"]] == contender_names()
    assert data["settings"]["clients"] == 4 and data["settings"]["rounds"] == 2 and data["settings"]["seeds"] == 2
    for row in data["protocols"]:
        assert ROW_FIELDS <= set(row)
        assert [run["seed"] for run in row["seeds"]] == [0, 1]
        federation = row["federation"]
        assert federation["clients"] == (4 if row["dp"] == "none" else 12)
        assert federation["sample_rate"] == (1.0 if row["dp"] == "none" else 0.3)
        for run in row["seeds"]:
            assert SEED_FIELDS <= set(run)
            assert len(run["accuracy_per_round"]) == 2
            assert set(run["probe"]) == {"messages", "aggregate", "chance", "vectors_attacked"}
            assert (run["epsilon"] is not None) == (row["dp"] != "none")
        summary = {entry["figure"]: entry for entry in row["summary"]}
        accuracies = [run["final_accuracy"] for run in row["seeds"]]
        assert summary["final_accuracy"]["interval"] == "min-max"
        assert summary["final_accuracy"]["low"] == min(accuracies) and summary["final_accuracy"]["high"] == max(
            accuracies)
        assert ("epsilon" in summary) == (row["dp"] != "none")


def test_every_row_s_parts_add_up_to_its_measured_wall_time_within_5_percent(report):
    for name, row in rows_of(report).items():
        for run in row["seeds"]:
            parts = run["seconds_by_part"]
            assert set(parts) <= set(ROW_PARTS), name
            measured = {"client_train", "client_online", "client_offline", "server", "simulator", "evaluation",
                        "build", "probe"}
            if row["dp"] != "none":
                measured.add("accounting")
            if row["protocol"] in ("secret-sharing", "paillier", "bfv"):
                measured.add("helpers")
            assert all(parts[part] > 0 for part in measured), (name, parts)
            assert all(spent >= 0 for spent in parts.values()), name
            assert abs(run["seconds"] - sum(parts.values())) <= 0.05 * run["seconds"], (name, run["seconds"], parts)
            assert math.isclose(run["unaccounted_seconds"], run["seconds"] - sum(parts.values()), abs_tol=1e-9)


def test_the_rounds_alone_add_up_to_their_wall_time_within_5_percent():
    # The rows' build and probe dominate a tiny run; the rounds' own parts are checked apart.
    from securefl.fl import FedAvg, FedAvgConfig
    from securefl.privacy.plugins import DistributedDP
    from securefl.protocols import Paillier, SecAgg, SecretSharing

    for protocol, dp in ((SecretSharing(), None), (SecAgg(), None), (Paillier(key_bits=1024), None),
                         (SecAgg(), DistributedDP(noise_multiplier=1.0, sample_rate=0.5, population=12))):
        history = FedAvg(protocol, FedAvgConfig(clients=12, rounds=3, hidden=8, seed=0), dp=dp).run()
        total = sum(record.seconds for record in history.records)
        assert sum(abs(record.unaccounted_seconds) for record in history.records) <= 0.05 * total, protocol.name
        if dp is not None:  # the noise's design is accounting in round 0, not server time
            first = history.records[0].seconds_by_part
            assert first["accounting"] > first["server"], first


def test_paillier_s_row_shows_its_offline_obfuscators_and_its_decryptor(report):
    paillier = rows_of(report)["paillier"]
    summary = {entry["figure"]: entry for entry in paillier["summary"]}
    assert summary["client_offline_seconds_per_round"]["mean"] > 10 * summary["client_online_seconds_per_round"][
        "mean"]
    assert summary["helpers_seconds_per_round"]["mean"] > 0
    assert summary["round_seconds"]["mean"] >= summary["client_offline_seconds_per_round"]["mean"]


def test_the_chance_baseline_is_one_for_every_row_of_a_federation(report):
    chances = {}
    for row in rows_of(report).values():
        for run in row["seeds"]:
            chances.setdefault((row["dp"] == "none", run["seed"]), set()).add(run["probe"]["chance"]["cosine"])
    assert all(len(values) == 1 for values in chances.values()), chances


def test_probe_separates_plaintext_from_every_secure_protocol(report):
    rows = rows_of(report)
    plaintext = rows.pop("plaintext")
    assert plaintext["secure"] is False and plaintext["server_saw_individual_updates"] is True
    for run in plaintext["seeds"]:
        assert run["probe"]["messages"]["cosine"] > 0.99
    for name, row in rows.items():
        assert row["secure"] is True, name
        assert row["server_saw_individual_updates"] is False, name
        for run, plain in zip(row["seeds"], plaintext["seeds"]):
            seen = run["probe"]["messages"]
            if run["probe"]["vectors_attacked"] == 0:  # ciphertexts only: nothing to read, and the JSON says why
                assert seen["cosine"] is None and seen["not_applicable"], name
            else:
                assert seen["cosine"] < plain["probe"]["messages"]["cosine"] - 0.3, name


def test_report_and_plots_are_written(report):
    markdown = (report / "report.md").read_text()
    for name in contender_names():
        assert f"### {name}" in markdown
    assert "## Where the time goes" in markdown and "2 seeds" in markdown
    for plot in ("accuracy.png", "overhead.png", "reconstructions.png"):
        data = (report / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000


def test_spread_is_min_max_below_five_seeds_and_a_t_interval_from_five():
    assert spread([0.5]) == {"mean": 0.5, "low": 0.5, "high": 0.5, "interval": "one seed", "seeds": 1}
    assert spread([1.0, 3.0, 2.0]) == {"mean": 2.0, "low": 1.0, "high": 3.0, "interval": "min-max", "seeds": 3}
    five = spread([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, sample sd sqrt(2.5), t_{0.975, 4} = 2.7764451
    assert five["interval"] == "95% t" and math.isclose(five["high"] - 3.0, 2.7764451 * math.sqrt(2.5 / 5),
                                                        rel_tol=1e-6)
    assert spread([None, None]) is None and spread([1.0, math.inf])["mean"] == math.inf
    assert spread([-math.inf, 1.0])["mean"] == -math.inf


def test_figures_print_to_the_interval_s_first_significant_digit():
    assert format_spread(spread([0.9526, 0.9480, 0.9551]), "fraction") == "0.952±0.004"
    assert format_spread(spread([0.0123, 0.0164]), "seconds") == "0.014±0.002"
    assert format_spread(spread([20994.0, 20994.0]), "bytes") == "20,994"
    assert format_spread(spread([1.0, 1.0 - 1e-16]), "fraction") == "1.000±0.000"
    assert format_spread(spread([0.25, 0.25]), "fraction") == "0.250±0"
    assert format_spread(spread([0.0, 0.0]), "count") == "0" and format_spread(None) == "n/a"
    assert format_spread(spread([1234.0, 1290.0])) == "1260±30"
    assert format_spread(spread([21000.0, 21100.0]), "bytes") == "21,050±50"


def test_unknown_protocol_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--protocols", "plaintext,bogus"])
    error = capsys.readouterr().err
    assert "unknown protocol(s) bogus" in error and len(error.strip().splitlines()) == 1


def test_compare_poison_rejected_by_validated_sharing_only():
    import warnings

    from securefl.errors import ClippingWarning
    from securefl.evaluation.compare import compare
    from securefl.evaluation.report import format_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        comparison = compare(clients=4, rounds=2, protocols=["secret-sharing", "validated-sharing"], seeds=1,
                             poison=1, boost=100.0, model_parameters=1000)
    rows = {result.contender.name: result.to_dict() for result in comparison.results}
    assert rows["validated-sharing"]["seeds"][0]["rejected"] == 2
    assert rows["validated-sharing"]["seeds"][0]["rejected_per_round"] == [{"0": "norm-exceeded"}] * 2
    assert rows["secret-sharing"]["seeds"][0]["rejected"] == 0
    assert comparison.settings["poison"] == {"attack": "model-replacement", "clients": [0], "boost": 100.0}
    assert "rejected" in format_table(comparison).splitlines()[0]
    assert rows["validated-sharing"]["threat_model"]


def test_compare_poisons_the_dp_rows_too_and_the_dp_clip_does_not_stop_the_attacker():
    import warnings

    from securefl.errors import ClippingWarning
    from securefl.evaluation.compare import compare

    options = dict(protocols=["secagg+central-dp"], seeds=1, dp_clients=10, dp_rounds=4, sample_rate=1.0,
                   model_parameters=1000, epsilon=50.0)  # 0.81 clean, 0.68 with the attacker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        clean = compare(**options).results[0].to_dict()["seeds"][0]
        poisoned = compare(**options, poison=1, boost=100.0).results[0].to_dict()["seeds"][0]
    assert poisoned["rejected"] == 0
    assert poisoned["final_accuracy"] < clean["final_accuracy"] - 0.1
