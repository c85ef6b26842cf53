"""The PyTorch twin of *any* numnet model (numnet.lab.reference_torch.build_twin) and the
twin's optimisers and schedules: built from the numnet model's layers, trained by both through
``train_run`` on tiny data in float64, they agree to the tolerance ``numnet compare`` uses
(losses of every update, the curves, the weights, batch norm's running statistics, the dropout
masks); ``numnet compare`` on a protocol of custom models passes and renders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_mnist import tiny_datasets

import numnet.lab.data
from numnet.core import losses, models
from numnet.core.layers import BatchNorm, Dropout
from numnet.lab.cli import main
from numnet.lab.compare.agreement import TOLERANCE
from numnet.lab.training import Plugin, RunSpec, build_model, expected_updates, train_run

torch = pytest.importorskip("torch")
from numnet.lab import reference_torch as ref  # noqa: E402

#: the brief's model: conv + batch norm (2d) + SAME max-pool + dropout after the flatten
CNN_BN = [
    {"type": "conv2d", "filters": 8, "kernel": 3, "stride": 1, "padding": "same"},
    {"type": "batchnorm"}, {"type": "relu"},
    {"type": "maxpool2d", "size": 2, "stride": 2, "padding": "same"},
    {"type": "flatten"}, {"type": "dropout", "rate": 0.25},
    {"type": "linear", "units": 32}, {"type": "relu"}, {"type": "linear", "units": 10},
]  # fmt: skip
#: an MLP with dropout on vectors and batch norm (1d)
MLP_DROPOUT = [
    {"type": "linear", "units": 16}, {"type": "tanh"}, {"type": "dropout", "rate": 0.5},
    {"type": "linear", "units": 12}, {"type": "batchnorm"}, {"type": "sigmoid"},
    {"type": "linear", "units": 10},
]  # fmt: skip
#: odd sizes: a stride-2 VALID conv (28 -> 13), SAME average pools with asymmetric (13 -> 7,
#: pads 0/1) and symmetric (3x3/1 on 7, pads 1/1) padding, dropout on NHWC maps, a stride-2
#: SAME conv with asymmetric padding (7 -> 4), a 3x3/2 SAME max-pool (4 -> 2, pads 0/1) and
#: batch norm over the flattened (h, w, c) features
ODD = [
    {"type": "conv2d", "filters": 4, "kernel": 3, "stride": 2, "padding": "valid"},
    {"type": "tanh"},
    {"type": "avgpool2d", "size": 2, "stride": 2, "padding": "same"},
    {"type": "avgpool2d", "size": 3, "stride": 1, "padding": "same"},
    {"type": "dropout", "rate": 0.2},
    {"type": "conv2d", "filters": 6, "kernel": 2, "stride": 2, "padding": "same"},
    {"type": "relu"},
    {"type": "maxpool2d", "size": 3, "stride": 2, "padding": "same"},
    {"type": "flatten"}, {"type": "batchnorm"}, {"type": "sigmoid"},
    {"type": "linear", "units": 10},
]  # fmt: skip
#: for the optimisers: batch norm after an activation (a bias right before a batch norm has a
#: zero gradient, whose rounding noise Adam and RMSprop scale up to lr-sized steps in both
#: implementations alike: invisible to the loss, not a disagreement worth testing here)
MLP_OPT = [
    {"type": "linear", "units": 16}, {"type": "tanh"}, {"type": "dropout", "rate": 0.5},
    {"type": "batchnorm"}, {"type": "linear", "units": 12}, {"type": "sigmoid"},
    {"type": "linear", "units": 10},
]  # fmt: skip
DEFINITIONS = {"cnn-bn": CNN_BN, "mlp-dropout": MLP_DROPOUT, "odd": ODD, "mlp-opt": MLP_OPT}
COSINE = {"type": "cosine", "warmup_updates": 5, "min_lr": 1e-4}


@pytest.fixture(scope="module")
def data() -> Any:
    return tiny_datasets()


def _spec(name: str, lr: float, reduction: str = "sum", optimizer: dict | None = None,
          schedule: dict | None = None) -> RunSpec:
    """A float64 run of 28 updates (550 tiny examples, batch 20), 4 curve points."""
    return RunSpec(model=name, layers=json.dumps(DEFINITIONS[name]), epochs=1, lr=lr,
                   reduction=reduction, batch_size=20, eval_every=7, eval_train_examples=100,
                   eval_test_examples=100, eval_batch_size=50, dtype="float64",
                   optimizer=None if optimizer is None else json.dumps(optimizer),
                   schedule=None if schedule is None else json.dumps(schedule))


class _Losses(Plugin):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def updated(self, run: Any, update: int, loss: float) -> None:
        self.losses.append(loss)


def _rel(a: Any, b: Any) -> float:
    """Largest ``|a - b| / max(|a|, |b|)`` over the elements."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)))


def _weights_rel(model: Any, twin: Any) -> float:
    """Largest weight difference over the largest weight of the model (a bias right before a
    batch norm stays at rounding noise in both, so per-tensor ratios mean nothing there)."""
    ours = [p.value for p in model.parameters()]
    theirs = ref.numnet_layout_arrays(twin)
    scale = max(float(np.max(np.abs(p))) for p in ours)
    return max(float(np.max(np.abs(p - q))) for p, q in zip(ours, theirs, strict=True)) / scale


def _train_both(spec: RunSpec, data: Any) -> dict[str, Any]:
    """numnet and the twin trained through ``train_run``; their agreement in figures."""
    total = expected_updates(data.train.num_examples, spec.batch_size, spec.epochs)
    ours_losses, theirs_losses = _Losses(), _Losses()
    ours = train_run(spec, data, plugins=[ours_losses])
    twin = ref.build_twin(build_model(spec))
    theirs = train_run(spec, data, stepper=ref.ReferenceTrainer.for_run(twin, spec, total),
                       plugins=[theirs_losses])
    assert ours.status == theirs.status == "ok"
    assert len(ours_losses.losses) == len(theirs_losses.losses) == total == 28
    buffers = [_rel(a, b) for (_, a), b in zip(ours.model.named_buffers(),
                                               ref.numnet_layout_buffers(twin), strict=True)]
    return {
        "ours": ours, "theirs": theirs, "twin": twin,
        "loss": _rel(ours_losses.losses, theirs_losses.losses),
        "curves": max(_rel(getattr(ours, k), getattr(theirs, k))
                      for k in ("train_loss", "test_loss")),
        "weights": _weights_rel(ours.model, twin),
        "buffers": max(buffers, default=0.0),
    }


# -- the twin's structure ----------------------------------------------------------------------


def test_twin_modules_names_and_exact_copy() -> None:
    model = models.build(ODD, name="odd", seed=2, dtype="float64")
    twin = ref.build_twin(model)
    assert ref.numnet_layer_names(twin) == ["unflatten"] + [n for n, _ in model.layers][1:]
    kinds = [type(m).__name__ for m in twin]
    assert kinds == ["Unflatten", "Conv2d", "Tanh", "TFAvgPool2d", "TFAvgPool2d",
                     "NumnetDropout", "PaddedConv2d", "ReLU", "SameMaxPool2d", "Flatten",
                     "BatchNorm1d", "Sigmoid", "Linear"]  # fmt: skip
    assert twin[3].pads == (0, 1, 0, 1) and twin[4].pads == (1, 1, 1, 1)
    assert twin[6].pads == (0, 1, 0, 1) and twin[8].pads == (0, 1, 0, 1)
    # the TF average pool's divisors: the in-image elements of each window
    assert twin[3].count[0, 0, 0].tolist() == [4.0] * 6 + [2.0]  # 13 = 6 * 2 + 1
    assert twin[3].count[0, 0, -1].tolist() == [2.0] * 6 + [1.0]
    assert twin[4].count[0, 0, 0].tolist() == [4.0] + [6.0] * 5 + [4.0]
    for (name, p), back in zip(model.named_parameters(), ref.numnet_layout_arrays(twin),
                               strict=True):  # fmt: skip
        np.testing.assert_array_equal(back, p.value, err_msg=name)
    cnn = ref.build_twin(models.build(CNN_BN, name="cnn-bn", seed=0))
    assert next(cnn.parameters()).dtype == torch.float32  # the numnet model's dtype
    assert isinstance(cnn[2], torch.nn.BatchNorm2d) and cnn[2].momentum == 0.1
    assert cnn[6].layout == (8, 14, 14)  # dropout after the flatten: numnet's order permuted


@pytest.mark.parametrize("name", ["cnn-bn", "mlp-dropout", "odd"])
def test_one_training_step_same_loss_gradients_masks_and_statistics(name: str) -> None:
    model = models.build(DEFINITIONS[name], name=name, seed=3, dtype="float64")
    trainer = ref.ReferenceTrainer(ref.build_twin(model), lr=0.1)
    rng = np.random.default_rng(4)
    x, y = rng.random((16, 784)), np.eye(10)[rng.integers(0, 10, 16)]
    for _ in range(2):  # the second step: the streams and statistics stay in step
        loss, dlogits = losses.softmax_cross_entropy(model.forward(x), y, reduction="sum")
        model.backward(dlogits)
        torch_loss = trainer.loss_and_grad(x, y)
        assert abs(float(loss) - torch_loss) <= 1e-13 * abs(torch_loss)
        grads = ref.numnet_layout_arrays(trainer.model, "grad")
        scale = max(float(np.max(np.abs(p.grad))) for p in model.parameters())
        for (pname, p), g in zip(model.named_parameters(), grads, strict=True):
            assert float(np.max(np.abs(p.grad - g))) <= 1e-12 * scale, pname
        dropouts = [m for m in trainer.model if isinstance(m, ref.numnet_dropout_class())]
        ours = [layer for _, layer in model.layers if isinstance(layer, Dropout)]
        assert len(dropouts) == len(ours) == 1
        np.testing.assert_array_equal(dropouts[0].last_mask, ours[0].last_mask)
        for (bname, a), b in zip(model.named_buffers(), ref.numnet_layout_buffers(trainer.model),
                                 strict=True):  # fmt: skip
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15, err_msg=bname)
    # evaluation: dropout off, batch norm on its running statistics, in both
    trainer.model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(trainer.forward(x).numpy(), model.forward(x, train=False),
                                   rtol=1e-11, atol=1e-12)


def test_twins_of_built_in_models_need_no_name() -> None:
    model = build_model(RunSpec(model="model4", epochs=1, lr=0.1, conv_activation="relu"))
    twin = ref.build_twin(model)  # no name: the layers say it all
    assert ref.numnet_layer_names(twin)[:3] == ["unflatten", "conv1", "act1"]
    assert ref.numnet_layer_names(ref.build_twin(models.build("model2"))) == [
        "fc1", "relu1", "fc2"]
    with pytest.raises(ValueError, match="float32 or float64"):
        ref.build_twin(models.build("model2"), dtype="float16")


# -- training through train_run ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "lr", "reduction"), [
    ("cnn-bn", 0.05, "mean"), ("cnn-bn", 0.01, "sum"), ("mlp-dropout", 0.05, "sum"),
    ("odd", 0.1, "mean"), ("odd", 0.01, "sum"),
])  # fmt: skip
def test_custom_models_train_alike(name: str, lr: float, reduction: str, data: Any) -> None:
    got = _train_both(_spec(name, lr, reduction), data)
    assert got["loss"] < TOLERANCE, got["loss"]
    assert got["curves"] < TOLERANCE, got["curves"]
    assert got["weights"] < TOLERANCE, got["weights"]
    assert got["buffers"] < TOLERANCE, got["buffers"]
    ours, theirs = got["ours"], got["theirs"]
    assert ours.train_accuracy == theirs.train_accuracy
    assert ours.test_accuracy == theirs.test_accuracy
    # the same units dropped at the last update
    twin_masks = [m.last_mask for m in got["twin"] if isinstance(m, ref.numnet_dropout_class())]
    our_masks = [la.last_mask for _, la in ours.model.layers if isinstance(la, Dropout)]
    assert len(twin_masks) == len(our_masks)
    for a, b in zip(our_masks, twin_masks, strict=True):
        np.testing.assert_array_equal(a, b)


OPTIMIZERS = [
    ({"type": "sgd", "momentum": 0.9}, 0.01),
    ({"type": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, 0.01),
    ({"type": "sgd", "momentum": 0.5, "dampening": 0.3, "weight_decay": 1e-2}, 0.01),
    ({"type": "adam"}, 0.003),
    ({"type": "adam", "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 1e-2}, 0.003),
    ({"type": "adamw", "weight_decay": 0.1}, 0.003),
    ({"type": "rmsprop"}, 0.001),
    ({"type": "rmsprop", "alpha": 0.9, "momentum": 0.5, "weight_decay": 1e-3}, 0.001),
]


@pytest.mark.parametrize(("optimizer", "lr"), OPTIMIZERS,
                         ids=[json.dumps(o, separators=(",", ":")) for o, _ in OPTIMIZERS])
def test_optimizers_with_a_cosine_schedule_and_warmup(optimizer: dict, lr: float,
                                                      data: Any) -> None:
    got = _train_both(_spec("mlp-opt", lr, "sum", optimizer, COSINE), data)
    for key in ("loss", "curves", "weights", "buffers"):
        assert got[key] < TOLERANCE, (key, got[key])


def test_the_schedule_sets_each_rate_and_a_step_schedule_agrees(data: Any) -> None:
    spec = _spec("cnn-bn", 0.01, "mean", {"type": "sgd", "momentum": 0.9, "nesterov": True},
                 {"type": "step", "step_size": 10, "gamma": 0.5, "warmup_updates": 3})
    got = _train_both(spec, data)
    for key in ("loss", "curves", "weights"):
        assert got[key] < TOLERANCE, (key, got[key])
    twin = ref.build_twin(build_model(spec))
    trainer = ref.ReferenceTrainer.for_run(twin, spec, 28)
    x, y = data.train.images[:20].astype(np.float64), data.train.labels[:20]
    rates = []
    for _ in range(14):
        trainer.step(x, y)
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    assert rates[:4] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01, 0.01], rel=1e-15)
    assert rates[12:] == [0.01, 0.005] and isinstance(trainer.optimizer, torch.optim.SGD)
    assert trainer.optimizer.param_groups[0]["nesterov"] is True


def test_torch_optimizer_mirrors_numnet_specs() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    adam = ref.torch_optimizer(params, '{"type":"adam","betas":[0.8,0.9]}', 0.01)
    assert isinstance(adam, torch.optim.Adam)
    group = adam.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        0.01, (0.8, 0.9), 1e-8, 0.0)
    rms = ref.torch_optimizer(params, {"type": "rmsprop", "momentum": 0.3}, 0.02)
    assert rms.param_groups[0]["alpha"] == 0.99 and not rms.param_groups[0]["centered"]
    assert isinstance(ref.torch_optimizer(params, {"type": "adamw"}, 1e-3), torch.optim.AdamW)
    assert type(ref.torch_optimizer(params, None, 0.1)) is torch.optim.SGD
    with pytest.raises(ValueError, match="lr is given twice"):
        ref.torch_optimizer(params, {"type": "sgd", "lr": 0.5}, 0.1)


def test_internals_match_for_a_custom_model_under_adam(data: Any) -> None:
    spec = _spec("mlp-opt", 0.003, "sum", {"type": "adam"}, COSINE)
    ours = train_run(spec, data)
    twin = ref.build_twin(build_model(spec))
    theirs = train_run(spec, data, stepper=ref.ReferenceTrainer.for_run(twin, spec, 28))
    a, b = ours.internals, theirs.internals
    for group in ("weight_norm", "grad_norm", "update_ratio", "dead_fraction"):
        assert list(a[group]) == list(b[group])
        for name in a[group]:
            np.testing.assert_allclose(a[group][name], b[group][name], rtol=1e-9)
    assert "batchnorm1" in a["weight_norm"]
    assert ours.final_model["confusion"] == theirs.final_model["confusion"]


# -- numnet compare on custom models -----------------------------------------------------------

CUSTOM_PROTOCOL = """
name = "tiny-custom"
seed = 3
[training]
batch_size = 50
eval_every = 4
eval_train_examples = 110
eval_test_examples = 200
eval_batch_size = 100
dtype = "float64"
[quick]
epochs = 1
eval_every = 4
[models.cnn-bn]
reduction = "mean"
layers = [
  { type = "conv2d", filters = 8, kernel = 3, stride = 1, padding = "same" },
  { type = "batchnorm" }, { type = "relu" },
  { type = "maxpool2d", size = 2, stride = 2, padding = "same" },
  { type = "flatten" }, { type = "dropout", rate = 0.25 },
  { type = "linear", units = 32 }, { type = "relu" }, { type = "linear", units = 10 },
]
settings = [ { epochs = 2, lr = 0.05 } ]
[models.mlp-drop]
layers = [
  { type = "linear", units = 16 }, { type = "tanh" }, { type = "dropout", rate = 0.5 },
  { type = "batchnorm" }, { type = "linear", units = 10 },
]
schedule = { type = "cosine", warmup_updates = 3 }
settings = [
  { epochs = 2, lr = 0.003, optimizer = { type = "adam" } },
  { epochs = 2, lr = 0.01, optimizer = { type = "sgd", momentum = 0.9, nesterov = true } },
]
[models.model2]
settings = [
  { epochs = 1, lr = 0.05, label = "batch norm", layers = [
    { type = "linear", units = 32 }, { type = "batchnorm" }, { type = "relu" },
    { type = "linear", units = 10 },
  ] },
]
"""


def test_compare_a_protocol_of_custom_models(tmp_path: Path) -> None:
    protocol = tmp_path / "custom.toml"
    protocol.write_text(CUSTOM_PROTOCOL)
    data = tiny_datasets(n_train=550, n_validation=50, n_test=200)
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(numnet.lab.data, "load", lambda *a, **k: data)
        code = main(["compare", "--protocol", str(protocol), "--quick", "--out", str(out),
                     "--quiet"])
    assert code == 0
    doc = json.loads((out / "compare.json").read_text())
    assert [r["run_id"] for r in doc["runs"]] == [
        "cnn-bn-setting1", "mlp-drop-setting1", "mlp-drop-setting2", "model2-setting1"]
    assert doc["summary"]["agreement_passed"] is True
    for r in doc["runs"]:
        ag = r["agreement"]
        assert ag["passed"] and ag["compared_updates"] == ag["updates"] == 12, r["run_id"]
        assert ag["max_rel_loss_diff"] < TOLERANCE, (r["run_id"], ag["max_rel_loss_diff"])
        # the same dropout masks and batch norm: the same curves to rounding (float64)
        n, t = r["runs"]["numnet"], r["runs"]["pytorch"]
        assert n["updates"] == t["updates"] == 12 and len(n["train_loss"]) == 3
        for key in ("train_loss", "test_loss"):
            np.testing.assert_allclose(t[key], n[key], rtol=TOLERANCE)
        assert t["test_accuracy"] == n["test_accuracy"]
    cnn = doc["runs"][0]
    assert cnn["time"]["pytorch_channels_last_s"] is not None  # a convolutional model
    assert cnn["runs"]["pytorch_channels_last"]["test_accuracy"]
    assert doc["runs"][1]["time"]["pytorch_channels_last_s"] is None
    md = (out / "compare.md").read_text()
    page = (out / "compare.html").read_text()
    for text in (md, page):
        assert "cnn-bn" in text and "mlp-drop" in text
        assert "Mcnn" not in text and "Model cnn-bn" not in text and "Task cnn" not in text
    assert "| cnn-bn-setting1 |" in md


def test_float32_batch_norm_is_as_exact_as_pytorch(data: Any) -> None:
    conv = models.build([{"type": "conv2d", "filters": 8, "kernel": 3}, {"type": "flatten"},
                         {"type": "linear", "units": 10}], seed=1, dtype="float64")
    images = data.train.images[:50].astype(np.float64)
    x = conv.layers[1][1].forward(conv.layers[0][1].forward(images))  # (50, 28, 28, 8)
    want = BatchNorm(8, dtype="float64").forward(x)
    ours = BatchNorm(8, dtype="float32").forward(x.astype(np.float32))
    nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
    theirs = torch.nn.BatchNorm2d(8).train()(nchw).detach().numpy().transpose(0, 2, 3, 1)
    scale = float(np.max(np.abs(want)))
    torch_err = float(np.max(np.abs(theirs - want))) / scale
    assert torch_err < 1e-6  # float32 rounding
    assert float(np.max(np.abs(ours - want))) / scale < 10 * torch_err


def test_agreement_of_a_rounding_sensitive_run_with_dropout(data: Any) -> None:
    from numnet.lab.compare import float64_agreement

    # lr 3 on the summed loss amplifies rounding: the control and lockstep decide
    spec = RunSpec(model="mlp-dropout", layers=json.dumps(MLP_DROPOUT), epochs=2, lr=3.0,
                   batch_size=10, dtype="float64")
    ag = float64_agreement(spec, data.train, 100)
    assert ag["passed"] and ag["method"] == "trajectory + control + lockstep"
    assert ag["max_rel_loss_diff"] > TOLERANCE
    # the control drops the same units of the same examples (its masks' rows reversed with
    # its batch): it stays at rounding for a while, then drifts as far as PyTorch does
    assert ag["control_rel_loss_diff_curve"][1][1] < 1e-14
    assert 10 < ag["horizon"] < ag["compared_updates"]
    assert ag["max_rel_loss_diff_within_horizon"] < TOLERANCE
    assert ag["lockstep_max_rel_loss_diff"] < 1e-12
    assert ag["lockstep_max_rel_param_diff"] < 1e-12
