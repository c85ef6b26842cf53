"""One command-line vocabulary: shared options mean the same everywhere, every option has help,
errors show the subcommand's usage and a "did you mean", ``train --setting`` is the protocol's
run, and the terminal says things once and in the right number."""

from __future__ import annotations

import argparse
import json

import pytest

from numnet.lab.cli import build_parser, common, main
from numnet.lab.experiments import execute as execute_mod
from numnet.lab.records import strip_timing

#: Which commands must have which shared options.
REQUIRED = {
    "--data-dir": {"reproduce", "train", "compare", "sweep", "data fetch"},
    "--no-verify": {"reproduce", "train", "compare", "sweep", "data fetch"},
    "--device": {"reproduce", "train", "compare", "sweep"},
    "--threads": {"reproduce", "train", "compare", "sweep"},
    "--quiet": {"reproduce", "train", "compare", "sweep", "data fetch"},
    "--seed": {"reproduce", "train", "compare", "sweep"},
    "--out": {"reproduce", "train", "compare", "sweep"},
    "--protocol": {"reproduce", "train", "compare", "sweep"},
}


pytestmark = pytest.mark.usefixtures("tiny_data")  # conftest: tiny digits, not MNIST


def subcommands(parser: argparse.ArgumentParser, prefix: str = ""):
    """``(name, parser)`` of every subcommand, nested ones as "data fetch"."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                yield full, sub
                yield from subcommands(sub, full)


def options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_shared_options_have_one_name_dest_type_and_help_everywhere() -> None:
    seen: dict[str, dict[str, tuple]] = {}
    for command, sub in subcommands(build_parser()):
        for action in options(sub):
            for name in action.option_strings:
                if name in common.SHARED_HELP:
                    seen.setdefault(name, {})[command] = (
                        tuple(action.option_strings), action.dest, action.type, action.help,
                        action.choices, action.nargs, action.const)
    assert set(seen) == set(common.SHARED_HELP)  # every shared option is used somewhere
    for name, where in seen.items():
        assert len(set(where.values())) == 1, (name, where)  # the same in every command
        assert next(iter(where.values()))[3] == common.SHARED_HELP[name]
    for name, commands in REQUIRED.items():
        assert commands <= set(seen[name]), (name, commands - set(seen[name]))


def test_every_option_and_positional_has_help() -> None:
    for command, sub in subcommands(build_parser()):
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), (command, action.dest)
        sub.format_help()  # every %(default)s and %% in the help texts formats


def test_mistyped_subcommand_gets_a_suggestion(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reprodce"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean 'reproduce'?" in err
    with pytest.raises(SystemExit):
        main(["data", "fecth"])
    err = capsys.readouterr().err
    assert err.startswith("usage: numnet data ") and "did you mean 'fetch'?" in err


def test_mistyped_option_shows_the_subcommand_usage_and_a_suggestion(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "1", "--epochs", "1", "--lr", "0.1", "--treads", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: numnet train ")  # not the top-level usage
    assert "unrecognized arguments: --treads 2 (did you mean --threads?)" in err
    with pytest.raises(SystemExit):
        main(["reproduce", "--quik", "--devise", "cpu"])
    err = capsys.readouterr().err
    assert err.startswith("usage: numnet reproduce ")
    assert "--quick for --quik" in err and "--device for --devise" in err
    with pytest.raises(SystemExit):  # an invalid value: the subcommand's usage too
        main(["compare", "--device", "tpu"])
    assert capsys.readouterr().err.startswith("usage: numnet compare ")


def test_train_setting_is_exactly_the_reproduce_run(proto, tmp_path, capsys) -> None:
    rep, tr = tmp_path / "rep", tmp_path / "tr"
    assert main(["reproduce", "--protocol", str(proto), "--out", str(rep), "--models", "1",
                 "--quiet", "--no-internals"]) == 0
    assert main(["train", "--protocol", str(proto), "--model", "1", "--setting", "2",
                 "--out", str(tr), "--quiet", "--no-internals"]) == 0
    a = json.loads((rep / "runs" / "model1-setting2.json").read_text())["result"]
    b = json.loads((tr / "runs" / "model1-setting2.json").read_text())["result"]
    assert strip_timing(a) == strip_timing(b)
    assert a["spec"]["epochs"] == 1 and a["spec"]["lr"] == 0.01  # the tiny protocol's setting 2


def test_train_setting_with_overrides_is_an_ad_hoc_run(proto, tmp_path, capsys) -> None:
    out = tmp_path / "t"
    assert main(["train", "--protocol", str(proto), "--model", "1", "--setting", "2",
                 "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "runs" / "model1-e2-lr0.01.json").read_text())["result"]
    spec = record["spec"]
    assert (spec["epochs"], spec["lr"], spec["setting"]) == (2, 0.01, None)
    assert (spec["batch_size"], spec["eval_every"]) == (10, 10)  # the protocol's, not 100/200


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--model", "1"], "give --setting K (the protocol's epochs and learning rate) "
                                "or --epochs and --lr"),
    (["train", "--model", "1", "--epochs", "1"], "or --lr"),
    (["train", "--model", "1", "--setting", "4"], "--setting must be 1..3 for model1"),
    (["train", "--model", "3", "--setting", "1"], "has no model3"),
])
def test_train_setting_errors_are_one_line(argv, message, proto, capsys) -> None:
    assert main([*argv, "--protocol", str(proto)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("command", [
    ["reproduce", "--models", "2"],
    ["train", "--model", "2", "--setting", "1"],
])
def test_no_verify_reaches_the_data_loader(command, proto, tmp_path, tiny_data, capsys) -> None:
    assert main([*command, "--protocol", str(proto), "--out", str(tmp_path / "o"), "--quiet",
                 "--no-verify", "--data-dir", str(tmp_path)]) == 0
    kwargs = tiny_data[-1][1]
    assert kwargs["verify"] is False and kwargs["data_dir"] == str(tmp_path)


def test_compare_takes_device_and_no_verify() -> None:
    args = build_parser().parse_args(["compare", "--device", "cuda", "--no-verify"])
    assert (args.device, args.no_verify) == ("cuda", True)


def test_train_says_its_result_once_and_in_the_right_number(proto, tmp_path, capsys) -> None:
    assert main(["train", "--protocol", str(proto), "--model", "2", "--setting", "1",
                 "--out", str(tmp_path / "t"), "--quiet"]) == 0
    captured = capsys.readouterr()
    result = [line for line in captured.out.splitlines() if line.startswith("model2-setting1: ")]
    assert len(result) == 1 and "train 1.0000" in result[0]
    assert "train 1.0000" not in captured.err  # not repeated by the log
    assert "1 epoch," in captured.err and "1 epochs" not in captured.err
    assert f"metrics: {tmp_path / 't' / 'runs' / 'model2-setting1.metrics.csv'}" in captured.out


def test_an_interrupt_is_reported_once(proto, tmp_path, monkeypatch, capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(execute_mod, "train_run", interrupted)  # --jobs 1: trained in this process
    assert main(["reproduce", "--protocol", str(proto), "--out", str(tmp_path / "o"),
                 "--quiet", "--jobs", "1"]) == 130
    err = capsys.readouterr().err
    assert err.count("interrupted") == 1 and "0 of 5 runs are saved" in err


def test_readme_quickstart_runs_the_quick_smoke_before_the_full_protocol() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = " && ".join(line for line in block.splitlines() if line and not line.startswith("#"))
    steps = [step.strip() for step in commands.split("&&")]
    quick = steps.index("numnet reproduce --quick")
    full = steps.index("numnet reproduce")
    assert quick < full
    for option in common.SHARED_HELP:  # the commands table names the shared options
        assert f"`{option}" in readme or f"/{option}`" in readme, option
