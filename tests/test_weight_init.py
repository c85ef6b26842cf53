"""The known variant's convolution initialisation (``weight_init = "conv_uniform_fan_sum"``):
the limits, the samples, the config round trip and the ``notebook-variant`` protocol using it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numnet.core import init, serialize
from numnet.core.errors import ProtocolError
from numnet.core.models import WEIGHT_INITS, build
from numnet.lab import protocol
from numnet.lab.experiments import plan_runs
from numnet.lab.training import build_model

VARIANT = "conv_uniform_fan_sum"


def test_limits_of_the_two_convolutions() -> None:
    assert init.fan_sum_limit((3, 3, 1, 8)) == pytest.approx(math.sqrt(6 / 80), rel=1e-15)
    assert init.fan_sum_limit((3, 3, 8, 8)) == pytest.approx(math.sqrt(6 / 584), rel=1e-15)
    with pytest.raises(ValueError, match="HWIO"):
        init.fan_sum_limit((3, 3, 8))


@pytest.mark.parametrize("kernels", ["plain", "fast"])
def test_conv_samples_stay_within_the_limits_and_dense_stay_glorot(kernels) -> None:
    variant = build("model4", seed=3, dtype="float64", weight_init=VARIANT, kernels=kernels)
    glorot = build("model4", seed=3, dtype="float64", kernels=kernels)
    v = {n: p.value for n, p in variant.named_parameters()}
    g = {n: p.value for n, p in glorot.named_parameters()}
    for name, fan_sum in (("conv1.weight", 80), ("conv2.weight", 584)):
        limit = math.sqrt(6 / fan_sum)
        assert np.abs(v[name]).max() <= limit
        assert np.abs(v[name]).max() > 0.9 * limit  # the whole range is used
        # the same random stream, another limit: the Glorot draws scaled
        ratio = limit / init.glorot_limit(v[name].shape)
        np.testing.assert_allclose(v[name], g[name] * ratio, rtol=1e-12)
    assert np.abs(g["conv2.weight"]).max() > math.sqrt(6 / 584)  # Glorot's range is wider
    for name in ("fc1.weight", "fc2.weight", "fc1.bias", "conv1.bias"):
        np.testing.assert_array_equal(v[name], g[name])  # dense layers: unchanged


def test_config_holds_weight_init_only_when_not_the_default(tmp_path) -> None:
    assert "weight_init" not in build("model4", seed=1).config  # older configs stay the same
    model = build("model4", seed=1, weight_init=VARIANT, bias_init="uniform_sqrt3")
    assert model.config["weight_init"] == VARIANT
    again = build(**model.config)
    for (n, a), (_, b) in zip(model.named_parameters(), again.named_parameters(), strict=True):
        np.testing.assert_array_equal(a.value, b.value, err_msg=n)
    path = serialize.save(tmp_path / "m.npz", model)
    loaded = serialize.load(path)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.parameters()[0].value, model.parameters()[0].value)


def test_models_without_convolutions_are_unchanged_and_bad_names_refused() -> None:
    for name in ("model1", "model2", "model3"):
        a, b = build(name, seed=2), build(name, seed=2, weight_init=VARIANT)
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            np.testing.assert_array_equal(p.value, q.value)
    assert WEIGHT_INITS == ("xavier_uniform", VARIANT)
    with pytest.raises(ValueError, match="weight_init must be one of"):
        build("model4", weight_init="he_normal")


def test_notebook_variant_mirrors_the_earlier_solution() -> None:
    p = protocol.load("notebook-variant")
    assert [m.reduction for m in p.models] == ["mean", "mean", "mean", "sum"]
    assert {(m.weight_init, m.bias_init, m.conv_activation) for m in p.models} == {
        (VARIANT, "uniform_sqrt3", "none")}
    spec = next(s for s in plan_runs(p, ["model4"]) if s.setting == 1)
    model = build_model(spec)  # what a run of this protocol trains from
    weights = dict(model.named_parameters())
    assert np.abs(weights["conv2.weight"].value).max() <= math.sqrt(6 / 584)
    assert np.abs(weights["conv1.bias"].value).max() <= math.sqrt(3 / 8)
    assert np.abs(weights["conv1.bias"].value).max() > 0  # biases drawn, not zeros


def test_protocol_schema_names_the_key_of_a_bad_weight_init() -> None:
    text = ('[defaults]\nweight_init = "he"\n'
            '[models.model4]\nsettings = [{ epochs = 1, lr = 0.1 }]\n')
    with pytest.raises(ProtocolError, match=r"defaults\.weight_init = 'he' is not allowed"):
        protocol.loads(text)
    text = '[models.model4]\nweight_init = "he"\nsettings = [{ epochs = 1, lr = 0.1 }]\n'
    with pytest.raises(ProtocolError, match=r"models\.model4\.weight_init"):
        protocol.loads(text)
