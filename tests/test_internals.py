"""Training internals: each number worked by hand on a tiny model, dead units on constructed
activations, the confusion matrix on hand-counted labels, and the run record they go into."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tiny_mnist import tiny_datasets

from numnet.core import introspect
from numnet.core.layers import Linear, ReLU
from numnet.core.models import Sequential
from numnet.lab.experiments.store import save_run
from numnet.lab.training import NumnetStepper, RunResult, RunSpec, train_run
from numnet.lab.training.internals import (
    InternalsRecorder,
    decode_image,
    encode_image,
    evidence_from_probs,
    internals_cells,
    internals_columns,
    most_confused,
)


def tiny(weights: list[np.ndarray], biases: list[np.ndarray], relu: bool = True) -> Sequential:
    """Linear [ReLU Linear]: fc1 (and fc2) with the given float64 parameters."""
    layers: list = [("fc1", Linear(*weights[0].shape, dtype="float64"))]
    if len(weights) > 1:
        if relu:
            layers.append(("relu1", ReLU()))
        layers.append(("fc2", Linear(*weights[1].shape, dtype="float64")))
    model = Sequential(layers, dtype="float64")
    for (_, layer), w, b in zip([lay for lay in layers if lay[1].param_names], weights, biases,
                                strict=True):
        layer.weight.value[...] = w
        layer.bias.value[...] = b
    return model


def test_norms_and_update_ratio_of_one_step_by_hand() -> None:
    # One Linear(2, 2) from zero: logits 0, p = (1/2, 1/2); label class 0, x = (1, 2).
    # dz = p - y = (-1/2, 1/2); dW = x^T dz = [[-1/2, 1/2], [-1, 1]], ||dW|| = sqrt(2.5).
    # SGD lr 0.1: W = -0.1 dW, ||W|| = 0.1 sqrt(2.5); ratio lr ||dW|| / ||W|| = 1.
    model = tiny([np.zeros((2, 2))], [np.zeros(2)])
    stepper = NumnetStepper(model, lr=0.1, reduction="sum")
    stepper.loss(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0]]))
    stepper.update()
    np.testing.assert_allclose(model.layers[0][1].weight.grad, [[-0.5, 0.5], [-1, 1]])
    rec = InternalsRecorder(0.1, np.array([[1.0, 2.0]]))
    rec.record(stepper, 1)
    d = rec.to_dict()
    assert d["grad_norm"]["fc1"] == [pytest.approx(math.sqrt(2.5))]
    assert d["weight_norm"]["fc1"] == [pytest.approx(0.1 * math.sqrt(2.5))]
    assert d["update_ratio"]["fc1"] == [pytest.approx(1.0)]
    assert d["update"] == [1] and d["dead_fraction"] == {} and d["start"]["update"] == []


def test_weight_norm_and_ratio_of_set_values() -> None:
    # ||[[3, 0], [0, 4]]|| = 5; ||[[1, 2], [2, 4]]|| = 5; lr 0.01 -> ratio 0.01.
    model = tiny([np.array([[3.0, 0], [0, 4]]), np.eye(2)], [np.zeros(2), np.zeros(2)])
    model.layers[0][1].weight.grad[...] = [[1, 2], [2, 4]]
    assert introspect.weight_norms(model) == {"fc1": 5.0, "fc2": pytest.approx(math.sqrt(2))}
    assert introspect.grad_norms(model)["fc1"] == 5.0
    rec = InternalsRecorder(0.01, np.ones((1, 2)))
    rec.record(NumnetStepper(model, 0.01, "sum"), 7)
    assert rec.to_dict()["update_ratio"]["fc1"] == [pytest.approx(0.01)]
    assert rec.to_dict()["update_ratio"]["fc2"] == [0.0]  # no gradient yet


def test_dead_fraction_constructed() -> None:
    # unit 0 is 0 for both examples (dead); unit 1 and 2 fire once each (alive).
    assert introspect.dead_fraction(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])) == 1 / 3
    # (N, H, W, C): channel 1 is 0 everywhere, channel 0 is positive at one position.
    a = np.zeros((2, 3, 3, 2))
    a[1, 2, 0, 0] = 0.5
    assert introspect.dead_fraction(a) == 0.5
    assert introspect.dead_fraction(np.full((4, 5), np.nan)) == 0.0  # NaN is not <= 0


def test_dead_fraction_of_a_model_on_its_probe() -> None:
    # fc1 = 0 * x + (-1, 1, -5): the ReLU sees -1, 1, -5 for every input -> units 0, 2 dead.
    model = tiny([np.zeros((2, 3)), np.ones((3, 2))], [np.array([-1.0, 1.0, -5.0]), np.zeros(2)])
    x = np.array([[1.0, 2.0], [-3.0, 0.5]])
    snap = NumnetStepper(model, 0.1, "sum").internals(x)
    assert snap["dead_fraction"] == {"relu1": pytest.approx(2 / 3)}
    # the logits: relu = (0, 1, 0) -> (1, 1) for both rows: |z| max 1, std 0, top prob 1/2
    assert snap["logit_absmax"] == pytest.approx(1.0)
    assert snap["logit_std"] == pytest.approx(0.0)
    assert snap["top_prob"] == pytest.approx(0.5)


def test_logit_stats_by_hand() -> None:
    z = np.array([[0.0, math.log(3)], [2.0, -2.0]])
    s = introspect.logit_stats(z)
    assert s["logit_absmax"] == pytest.approx((math.log(3) + 2) / 2)
    assert s["logit_std"] == pytest.approx(np.std([0, math.log(3), 2, -2]))
    # softmax(0, ln 3) = (1/4, 3/4); softmax(2, -2) top = e^2 / (e^2 + e^-2)
    assert s["top_prob"] == pytest.approx((0.75 + math.exp(2) / (math.exp(2) + math.exp(-2))) / 2)
    assert math.isnan(introspect.logit_stats(np.array([[np.inf, 0.0]]))["top_prob"])


def test_confusion_matrix_by_hand() -> None:
    labels = [0, 0, 1, 2, 2, 2]
    predicted = [0, 1, 1, 2, 0, 2]
    c = introspect.confusion_matrix(labels, predicted, num_classes=3)
    np.testing.assert_array_equal(c, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert introspect.confusion_matrix(labels, predicted).shape == (10, 10)
    with pytest.raises(ValueError):
        introspect.confusion_matrix([0, 3], [0, 1], num_classes=3)


def test_most_confused_and_evidence() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1])  # wrong: 1 (sure 0.8) and 2 (0.6)
    np.testing.assert_array_equal(most_confused(probs, labels), [1, 2])
    p10 = np.zeros((4, 10))
    p10[:, :2] = probs
    ev = evidence_from_probs(p10, labels, np.linspace(0, 1, 4 * 784).reshape(4, 784))
    assert ev["confusion"][0][:2] == [1, 2] and ev["confusion"][1][:2] == [0, 1]
    assert [(c["index"], c["label"], c["predicted"]) for c in ev["confused"]] == [(1, 0, 1),
                                                                                   (2, 0, 1)]
    assert ev["confused"][0]["prob"] == 0.8


def test_image_codec_round_trip() -> None:
    a = np.linspace(-2, 3, 24).reshape(2, 3, 4)
    back = decode_image(encode_image(a))
    assert back.shape == a.shape
    np.testing.assert_allclose(back, a, atol=5 / 255 / 2 + 1e-12)


def test_internals_columns_and_cells() -> None:
    rec = {"update": [50, 100], "weight_norm": {"fc1": [1.0, 2.0]}, "grad_norm": {"fc1": [3.0,
           None]}, "update_ratio": {"fc1": [0.3, None]}, "dead_fraction": {"relu1": [0.0, 1.0]},
           "logit_absmax": [1.5, 2.5], "logit_std": [1.0, 1.0], "top_prob": [0.1, 0.2]}
    assert internals_columns(rec) == ["weight_norm.fc1", "grad_norm.fc1", "update_ratio.fc1",
                                      "dead_fraction.relu1", "logit_absmax", "logit_std",
                                      "top_prob"]
    assert internals_cells(rec, 100) == ["2.0", "", "", "1.0", "2.5", "1.0", "0.2"]
    assert internals_cells(rec, 75) == [""] * 7


@pytest.mark.parametrize("model", ["model2", "model4"])
def test_run_records_internals_without_changing_it(model: str, tmp_path) -> None:
    data = tiny_datasets()
    kw = dict(model=model, epochs=1, lr=0.01, eval_every=2, eval_train_examples=100,
              eval_test_examples=100)
    with_it = train_run(RunSpec(**kw), data)
    without = train_run(RunSpec(**kw, internals=False), data)
    assert with_it.train_loss == without.train_loss and without.internals is None
    assert 0 < with_it.internals_time < with_it.wall_time and without.internals_time == 0
    assert with_it.test_accuracy == without.test_accuracy
    i = with_it.internals
    n = with_it.evaluations
    assert i["update"] == [2 * (k + 1) for k in range(n)]
    layers = ["fc1", "fc2"] if model == "model2" else ["conv1", "conv2", "fc1", "fc2"]
    assert list(i["update_ratio"]) == layers
    assert all(len(v) == n for group in ("weight_norm", "grad_norm", "update_ratio",
                                         "dead_fraction") for v in i[group].values())
    assert list(i["dead_fraction"]) == ["relu1"] and len(i["top_prob"]) == n
    f = with_it.final_model
    assert sum(map(sum, f["confusion"])) == 100
    assert ("filters" in f) == (model == "model4")
    if model == "model4":
        assert f["filters"]["weights"]["shape"] == [8, 3, 3]
        assert f["feature_maps"]["conv1"]["shape"] == [8, 28, 28]
    d = with_it.to_dict()
    json.dumps(d, allow_nan=False)
    assert RunResult.from_dict(d).internals == i
    assert "internals" not in RunSpec(**kw).to_dict()
    assert RunSpec(**kw, internals=False).to_dict()["internals"] is False
    with_it.model = None
    save_run(tmp_path, with_it, "h", "f")
    csv = (tmp_path / "runs" / f"{with_it.run_id}.metrics.csv").read_text().splitlines()
    head = csv[0].split(",")
    assert head[8:] == internals_columns(i) and len(csv) == 2 * n + 1 + 2  # + final rows
    train_row, test_row = csv[2 * n - 1].split(","), csv[2 * n].split(",")
    assert train_row[8:] == test_row[8:] == internals_cells(i, i["update"][-1])
    assert float(train_row[head.index("top_prob")]) == i["top_prob"][-1]
    assert csv[-1].split(",")[7:] == ["final"] + [""] * len(internals_columns(i))
