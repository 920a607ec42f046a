"""The ``securefl`` parser: --version, defaults in help, one metavar per option, suggestions, up-front checks."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import time
from typing import Any

import pytest

import securefl
from securefl.cli import build_parser, main
from securefl.cli.arguments import HelpFormatter
from securefl.cli.progress import working


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    return error


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"securefl {securefl.__version__}\n"
    assert securefl.__version__ == importlib.metadata.version("securefl")


@pytest.mark.parametrize("command", ["run", "compare", "epsilon", "calibrate"])
def test_help_gives_the_default_of_every_option(command: str) -> None:
    parser = _subcommands()[command]
    assert parser.formatter_class is HelpFormatter
    formatter = HelpFormatter(prog=parser.prog)
    for action in _options(parser):
        if action.required or action.nargs == 0:  # a required option or a flag has no default to state
            continue
        text = formatter._get_help_string(action) or ""
        assert "default" in text.lower(), f"{command} {action.option_strings[0]}: {text!r}"
    assert "(default:" in " ".join(parser.format_help().split())


def test_help_shows_the_defaults_of_compare(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--clients N", "10"), ("--rounds T", "10"), ("--dropout P", "0.0"),
                            ("--delta DELTA", "1e-05"), ("--seed SEED", "0"), ("--epsilon EPS", "8.0"),
                            ("--dp-clients M", "100"), ("--dp-rounds R", "20"), ("--sample-rate Q", "0.3"),
                            ("--seeds S", "3")):
        start = text.index(option, text.index("options:"))
        assert f"(default: {default})" in text[start:text.index(" --", start + len(option))], option


def test_run_help_states_the_defaults_applied_later() -> None:
    from securefl.fl.fedavg import FedAvgConfig

    config = FedAvgConfig()
    text = " ".join(_subcommands()["run"].format_help().split())
    assert f"local epochs per round (default: {config.local_epochs})" in text
    assert f"hidden units of the MLP (default: {config.hidden})" in text
    assert f"(default: {config.alpha})" in text


@pytest.mark.parametrize("command", ["run", "compare", "epsilon", "calibrate"])
def test_every_option_has_a_placeholder_of_its_own(command: str) -> None:
    metavars = [a.metavar or a.dest.upper() for a in _options(_subcommands()[command])
                if a.nargs != 0 and a.choices is None and not isinstance(a, argparse._VersionAction)]
    assert len(metavars) == len(set(metavars)), metavars


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["run", "--protocl", "secagg"], "unrecognized arguments: --protocl; did you mean --protocol?"),
        (["run", "--protocl=secagg"], "did you mean --protocol?"),
        (["compare", "--clinets", "3", "--rouns", "2"],
         "did you mean --clients (for --clinets), --rounds (for --rouns)?"),
        (["run", "--client", "3", "--protocl", "secagg"], "unrecognized arguments: --protocl;"),  # --client: --clients
        (["calibrate", "--epsilno", "1"], "did you mean --epsilon?"),
        (["--verison"], "did you mean --version?"),
    ],
)
def test_an_unknown_option_gets_a_suggestion(argv: list[str], hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    error = _one_line_error(capsys, argv)
    command = "" if argv[0].startswith("-") else f" {argv[0]}"
    assert error.startswith(f"securefl{command}: error: ") and hint in error


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["run", "--protocol", "secagg++"], "invalid choice: 'secagg++'"),
        (["run", "--dp", "centrl"], "did you mean 'central'?"),
        (["epsilon", "--accountant", "pdl"], "did you mean 'pld'?"),
        (["rn"], "did you mean 'run'?"),
        (["compare", "--protocols", "plaintext,secag"], "did you mean 'secagg' for 'secag'?"),
    ],
)
def test_an_invalid_choice_gets_a_suggestion(argv: list[str], hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    error = _one_line_error(capsys, argv)
    assert hint in error
    if argv[:3] == ["run", "--protocol", "secagg++"]:
        assert error.rstrip().endswith("did you mean 'secagg+'?")


def test_an_option_far_from_every_name_gets_no_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    error = _one_line_error(capsys, ["run", "--frobnicate"])
    assert "unrecognized arguments: --frobnicate" in error and "did you mean" not in error


def test_compare_refuses_one_client_before_any_training(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from securefl.fl.fedavg import FedAvg

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compare trained before refusing --clients 1")

    monkeypatch.setattr(FedAvg, "run", no_training)
    started = time.perf_counter()
    code = main(["compare", "--clients", "1", "--out", str(tmp_path / "report"), "--quiet"])
    elapsed = time.perf_counter() - started
    captured = capsys.readouterr()
    assert code == 2 and elapsed < 5.0
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("securefl compare: error: --clients 1: ") and "min_clients=2" in captured.err
    assert not (tmp_path / "report").exists()


def test_compare_refuses_a_file_as_the_report_folder(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "taken"
    target.write_text("")
    assert main(["compare", "--clients", "2", "--out", str(target), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epsilon", "8"], "--epsilon needs --dp central or --dp distributed"),
        (["--noise-multiplier", "1"], "--noise-multiplier needs --dp central or --dp distributed"),
        (["--clip", "2"], "--clip needs --dp central or --dp distributed"),
        (["--sample-rate", "0.5"], "--sample-rate needs --dp central or --dp distributed"),
        (["--delta", "1e-6"], "--delta needs --dp central or --dp distributed"),
        (["--accountant", "pld"], "--accountant needs --dp central or --dp distributed"),
        (["--dp", "central"], "--dp central needs exactly one of --epsilon and --noise-multiplier"),
        (["--alpha", "0.1"], "--alpha needs --partition dirichlet"),
        (["--protocol", "paillier", "--neighbors", "3"], "--neighbors applies to secagg+ only"),
        (["--mechanism", "ddgauss", "--dp", "central", "--epsilon", "8"], "--mechanism needs --dp distributed"),
    ],
)
def test_run_refuses_an_option_that_would_be_ignored(argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from securefl.fl.fedavg import FedAvg

    monkeypatch.setattr(FedAvg, "run", lambda *a, **k: pytest.fail("trained before refusing"))
    assert main(["run", "--clients", "4", "--rounds", "1", "--quiet", *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


PRIVACY = ["--sample-rate", "0.1", "--steps", "10", "--delta", "1e-5"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["epsilon", "--noise-multiplier", "1", *PRIVACY, "--discretization", "1e-3"],
         "--discretization needs --accountant pld"),
        (["calibrate", "--epsilon", "1", *PRIVACY, "--discretization", "1e-3"],
         "--discretization needs --accountant pld"),
        (["epsilon", "--noise-multiplier", "1", *PRIVACY, "--clip", "2"],
         "--clip needs --mechanism skellam or ddgauss"),
    ],
)
def test_privacy_commands_refuse_an_option_that_would_be_ignored(argv: list[str], message: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_a_long_calibration_shows_progress_on_stderr_and_only_json_on_stdout(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["calibrate", "--epsilon", "3", "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5",
                 "--accountant", "pld", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.startswith('{"schema_version": 1') and captured.out.count("\n") == 1
    assert "securefl calibrate: searching the noise multiplier (PLD accountant)" in captured.err
    assert ": done in " in captured.err


def test_quiet_and_short_steps_show_no_progress(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["calibrate", "--epsilon", "3", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5", "--json"]
    assert main(argv) == 0 and capsys.readouterr().err == ""  # RDP: well under the half-second delay

    from securefl.cli import privacy

    def slow(**options: Any) -> float:
        time.sleep(0.8)
        return 1.0

    monkeypatch.setattr(privacy, "calibrate_noise_multiplier", slow)
    assert main([*argv, "--quiet"]) == 0 and capsys.readouterr().err == ""
    assert main(argv) == 0 and "done in" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_working_counts_seconds_on_a_terminal_and_writes_two_lines_elsewhere() -> None:
    log, terminal = io.StringIO(), _Terminal()
    for stream in (log, terminal):
        with working("step", stream=stream, delay=0.01, interval=0.01):
            time.sleep(0.1)
    assert log.getvalue().splitlines()[0] == "step ..." and log.getvalue().count("\n") == 2
    assert "\rstep ... 0.0" in terminal.getvalue() and "\rstep: done in " in terminal.getvalue()
    fast = io.StringIO()
    with working("step", stream=fast, delay=5):
        pass
    assert fast.getvalue() == ""


def test_working_says_when_a_step_stopped() -> None:
    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt), working("step", stream=log, delay=0.0):
        time.sleep(0.05)
        raise KeyboardInterrupt
    assert "step: stopped after " in log.getvalue()


@pytest.mark.parametrize(("argv", "message"), [
    (["--poison", "2", "--clients", "2"], "--poison 2"),
    (["--boost", "5"], "--boost needs --poison"),
    (["--norm-bound", "3", "--protocols", "secagg"], "--norm-bound applies to the validated-sharing row"),
])
def test_compare_refuses_bad_poisoning_options(tmp_path: Any, capsys: pytest.CaptureFixture[str], argv: list[str],
                                               message: str) -> None:
    assert main(["compare", *argv, "--out", str(tmp_path / "report"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
