"""Protocol files that define their own models and choose optimisers, weight decay and
schedules per model and per setting: how they plan, that they train (on every command), and
that a bad one is refused in one line before any data is loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_DATA
from tiny_mnist import TINY_PROTOCOL

from numnet.core import models, serialize
from numnet.lab import experiments, protocol
from numnet.lab.cli import main
from numnet.lab.training import RunSpec, build_model, train_run

pytestmark = pytest.mark.usefixtures("tiny_data")  # conftest: tiny digits, not MNIST

MLP = ('[ { type = "linear", units = 16 }, { type = "relu" }, { type = "dropout", rate = 0.2 },'
       ' { type = "linear", units = 10 } ]')
CNN_BN = ('[ { type = "conv2d", filters = 4, kernel = 3, stride = 1, padding = "same" }, '
          '{ type = "batchnorm" }, { type = "relu" }, '
          '{ type = "maxpool2d", size = 2, stride = 2, padding = "same" }, { type = "flatten" },'
          ' { type = "dropout", rate = 0.25 }, { type = "linear", units = 10 } ]')
OWN = TINY_PROTOCOL.split("[models.model1]")[0].replace(
    "[training]\n", "[training]\nshared_start = true\n") + f"""
[defaults]
reduction = "mean"
weight_decay = 0.0001

[models.mlp]
layers = {MLP}
optimizer = {{ type = "sgd", momentum = 0.9 }}
settings = [
  {{ epochs = 1, lr = 0.05, label = "momentum" }},
  {{ epochs = 1, lr = 0.01, optimizer = {{ type = "adam" }}, reduction = "sum", \
schedule = {{ type = "cosine", warmup_updates = 5 }}, label = "Adam, cosine" }},
]

[models.cnn-bn]
layers = {CNN_BN}
settings = [ {{ epochs = 1, lr = 0.05 }} ]
"""


def write(tmp_path, text: str, name: str = "own.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_assignment_keeps_its_hash_and_its_runs() -> None:
    """New options at their defaults are left out of the hash and of every run spec."""
    proto = protocol.load("assignment")
    assert proto.hash == "941664fdab630d2f"  # as before options existed
    for spec in experiments.plan_runs(proto):
        assert spec.layers is spec.optimizer is spec.schedule is None
        assert not {"layers", "optimizer", "schedule"} & set(spec.to_dict())


def test_options_of_defaults_model_and_setting_the_setting_wins(tmp_path) -> None:
    proto = protocol.load(write(tmp_path, OWN))
    assert [m.name for m in proto.models] == ["mlp", "cnn-bn"]  # the file's order
    mlp1, mlp2, cnn = experiments.plan_runs(proto)
    assert json.loads(mlp1.layers)[0] == {"type": "linear", "units": 16}
    assert mlp1.reduction == "mean" and mlp2.reduction == "sum"
    assert json.loads(mlp1.optimizer) == {"type": "sgd", "momentum": 0.9, "weight_decay": 1e-4}
    assert json.loads(mlp2.optimizer) == {"type": "adam", "weight_decay": 1e-4}
    assert json.loads(mlp2.schedule) == {"type": "cosine", "warmup_updates": 5}
    assert mlp1.schedule is None and cnn.optimizer == json.dumps(
        {"type": "sgd", "weight_decay": 1e-4}, separators=(",", ":"))
    assert proto.metadata()["labels"] == {"mlp": ["momentum", "Adam, cosine"],
                                          "cnn-bn": [None]}
    # shared starts: the settings of a model start from the same weights
    a, b = build_model(mlp1), build_model(mlp2)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.value, q.value)


def test_a_cosine_schedule_keeps_shorter_runs_apart(tmp_path) -> None:
    """A cosine decays over the whole run, so a shorter run is no prefix of a longer one; a
    step schedule does not depend on the length, so it is."""
    for kind, groups in (("cosine", 2), ("step", 1)):
        extra = ', step_size = 3' if kind == "step" else ""
        text = OWN.replace('{ type = "cosine", warmup_updates = 5 }',
                           f'{{ type = "{kind}"{extra} }}').replace(
            '{ epochs = 1, lr = 0.05, label = "momentum" },',
            '{ epochs = 2, lr = 0.01, optimizer = { type = "adam" }, reduction = "sum", '
            f'schedule = {{ type = "{kind}"{extra} }} }},')
        specs = experiments.plan_runs(protocol.load(write(tmp_path, text)), ["mlp"])
        assert len(experiments.run_groups(specs)) == groups, kind


def test_own_models_run_on_reproduce_train_report_and_predict(tmp_path, capsys,
                                                              tiny_data) -> None:
    path = write(tmp_path, OWN)
    out = tmp_path / "out"
    assert main(["reproduce", "--protocol", str(path), "--out", str(out), "--quiet",
                 "--threads", "1"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert [r["run_id"] for r in doc["runs"]] == ["mlp-setting1", "mlp-setting2",
                                                  "cnn-bn-setting1"]
    assert all(r["status"] == "ok" for r in doc["runs"])
    assert json.loads(doc["runs"][1]["spec"]["optimizer"])["type"] == "adam"
    md = (out / "report.md").read_text()
    assert "## What each change did" in md and "Adam, cosine" in md
    assert main(["report", str(out)]) == 0
    # the weights file carries its definition: predict and serialize.load rebuild the model
    model = serialize.load(out / "weights" / "cnn-bn-setting1.npz")
    assert [type(layer).__name__ for _, layer in model.layers][:3] == [
        "Reshape", "Conv2D", "BatchNorm"]
    x = TINY_DATA.test.images[:50]
    trained = train_run(experiments.plan_runs(protocol.load(path), ["cnn-bn"])[0], TINY_DATA)
    np.testing.assert_array_equal(model.forward(x, train=False),
                                  trained.model.forward(x, train=False))
    # train --model NAME takes a model the protocol defines
    capsys.readouterr()
    assert main(["train", "--protocol", str(path), "--model", "mlp", "--setting", "2",
                 "--out", str(tmp_path / "t"), "--quiet"]) == 0
    assert "mlp-setting2" in capsys.readouterr().out


def test_evaluation_is_in_eval_mode_no_dropout_running_statistics() -> None:
    """Two evaluations of a model with dropout and batch norm give the same numbers, and
    evaluating changes no running statistic."""
    model = models.build(json.loads(json.dumps(
        [{"type": "conv2d", "filters": 2, "kernel": 3}, {"type": "batchnorm"},
         {"type": "flatten"}, {"type": "dropout", "rate": 0.5},
         {"type": "linear", "units": 10}])), seed=3)
    x = TINY_DATA.train.images[:40]
    model.forward(x)  # a training pass moves the running statistics
    bn = model.layers[2][1]
    before = bn.running_mean.copy()
    a, b = model.forward(x, train=False), model.forward(x, train=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(bn.running_mean, before)


BAD = [
    ('optimizer = { type = "adamm" }', "did you mean 'adam'"),
    ('optimizer = { type = "adam", betas = [0.9, 1.0] }', "betas"),
    ('optimizer = { type = "adam", eps = 0 }', "eps"),
    ('optimizer = { type = "sgd", momentum = -0.5 }', "momentum"),
    ('optimizer = { type = "sgd", momentom = 0.9 }', "did you mean 'momentum'"),
    ('optimizer = "adam"', "must be a table"),
    ("weight_decay = -1", "weight_decay"),
    ('schedule = { type = "cosin" }', "did you mean 'cosine'"),
    ('schedule = { type = "step", step_size = 0 }', "step_size"),
    ('schedule = { type = "step", step_size = 5, gamma = 0 }', "gamma"),
    ('layers = [ { type = "conv2d", filters = 4, kernel = 3 }, { type = "linear", units = 10 } ]',
     "flatten"),
    ('layers = [ { type = "linear", units = 7 } ]', "10"),
    ('layers = [ { type = "lineer", units = 10 } ]', "did you mean 'linear'"),
    ('layers = [ { type = "maxpool2d", size = 40 }, { type = "flatten" }, '
     '{ type = "linear", units = 10 } ]', "maxpool2d"),
    ('layers = [ { type = "dropout", rate = 1.0 }, { type = "linear", units = 10 } ]', "rate"),
    ('layers = [ { type = "linear", units = true }, { type = "linear", units = 10 } ]', "units"),
    ("layers = []", "no layers"),
]


@pytest.mark.parametrize(("line", "expected"), BAD)
def test_a_bad_option_or_definition_is_one_line_before_any_data(tmp_path, capsys, tiny_data,
                                                                line, expected) -> None:
    text = TINY_PROTOCOL.split("[models.model1]")[0] + (
        f"[models.net]\n{line}\nsettings = [ {{ epochs = 1, lr = 0.01 }} ]\n")
    if not line.startswith("layers"):
        text = text.replace("[models.net]\n", f"[models.net]\nlayers = {MLP}\n")
    path = write(tmp_path, text, "bad.toml")
    out = tmp_path / "out"
    assert main(["reproduce", "--protocol", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and expected in err, err
    assert "bad.toml" in err
    assert not tiny_data and not out.exists()  # refused before the data and the folder


def test_an_unknown_model_without_layers_says_what_to_do(tmp_path, capsys) -> None:
    text = TINY_PROTOCOL.split("[models.model1]")[0] + (
        "[models.model5]\nsettings = [ { epochs = 1, lr = 0.01 } ]\n")
    assert main(["reproduce", "--protocol", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'model5'" in err and "layers = " in err


def test_dataset_option_replaces_the_protocols(tmp_path, capsys, tiny_data) -> None:
    out = tmp_path / "out"
    assert main(["reproduce", "--protocol", str(write(tmp_path, TINY_PROTOCOL)), "--models",
                 "2", "--dataset", "fashion-mnist", "--out", str(out), "--quiet"]) == 0
    assert tiny_data[-1][1]["dataset"] == "fashion-mnist"
    doc = json.loads((out / "results.json").read_text())
    assert doc["data"]["dataset"] == "fashion-mnist"


def test_an_adam_run_is_the_same_on_one_process_and_on_workers(tmp_path) -> None:
    proto = protocol.load(write(tmp_path, OWN))
    outs = [experiments.reproduce(proto, TINY_DATA, tmp_path / f"j{jobs}", models=["mlp"],
                                  progress="none", log=lambda s: None, jobs=jobs,
                                  make_report=False)
            for jobs in (1, 2)]
    assert ((outs[0].out_dir / "results.csv").read_text()
            == (outs[1].out_dir / "results.csv").read_text())


def test_a_run_spec_with_options_round_trips_through_its_record() -> None:
    spec = RunSpec("net", 1, 0.01, layers='[{"type":"linear","units":10}]',
                   optimizer='{"type":"adam"}', schedule='{"type":"constant"}')
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_the_optimisers_state_is_saved_beside_the_weights_and_continues_exactly(tmp_path):
    """A run with momentum or Adam saves its optimiser's state after its last update; loaded
    into a fresh optimiser on the saved weights, the next steps equal those of the run
    continued without a stop."""
    from numnet.core import optim
    from numnet.core.losses import softmax_cross_entropy
    from numnet.lab.experiments.store import optimizer_path

    proto = protocol.load(write(tmp_path, OWN))
    out = experiments.reproduce(proto, TINY_DATA, tmp_path / "o", models=["mlp"],
                                progress="none", log=lambda s: None, jobs=1,
                                make_report=False).out_dir
    spec = experiments.plan_runs(proto, ["mlp"])[1]  # Adam
    with np.load(optimizer_path(out, spec.run_id)) as f:
        state = optim.state_from_arrays(dict(f))
    assert state["type"] == "adam" and state["step"] == 56  # 550 examples at batch 10: 55 + 1
    alone = train_run(spec, TINY_DATA)  # the same run, its optimiser still in memory
    resumed = serialize.load(out / "weights" / f"{spec.run_id}.npz")
    opt = optim.build(resumed.parameters(), json.loads(spec.optimizer), lr=0.001)
    opt.load_state_dict(state)
    again = optim.build(alone.model.parameters(), json.loads(spec.optimizer), lr=0.001)
    again.load_state_dict(alone.optimizer_state)
    x, y = TINY_DATA.train.images[:10], TINY_DATA.train.labels[:10]
    for model in (resumed, alone.model):  # the dropout generators' states are not saved:
        for _, layer in model.layers:  # give both the same stream from here on
            if hasattr(layer, "rng"):
                layer.rng = np.random.default_rng(5)
    for model, o in ((resumed, opt), (alone.model, again)):
        for _ in range(3):
            _, d = softmax_cross_entropy(model.forward(x), y, reduction="sum")
            model.backward(d)
            o.step()
    for (_, p), (_, q) in zip(resumed.named_parameters(), alone.model.named_parameters(),
                              strict=True):
        np.testing.assert_array_equal(p.value, q.value)
