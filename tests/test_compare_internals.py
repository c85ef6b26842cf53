"""The PyTorch stepper's training internals match numnet's on the same weights and batches, and
``numnet compare`` shows both side by side."""

from __future__ import annotations

import numpy as np
import pytest
from test_compare import TINY_PROTOCOL
from tiny_mnist import tiny_datasets

import numnet.lab.data
from numnet.lab.cli import main
from numnet.lab.training import RunSpec, build_model, train_run

torch = pytest.importorskip("torch")
from numnet.lab.reference_torch import (  # noqa: E402
    ReferenceTrainer,
    build_twin,
    numnet_layer_names,
)


@pytest.mark.parametrize("model", ["model2", "model4"])
def test_torch_internals_match_numnet(model: str) -> None:
    data = tiny_datasets()
    spec = RunSpec(model=model, epochs=1, lr=0.01, eval_every=3, eval_train_examples=100,
                   eval_test_examples=100, dtype="float64")
    ours = train_run(spec, data)
    twin = build_twin(build_model(spec))
    theirs = train_run(spec, data, stepper=ReferenceTrainer(twin, lr=spec.lr,
                                                            reduction=spec.reduction))
    a, b = ours.internals, theirs.internals
    assert a["update"] == b["update"] and a["start"]["update"] == b["start"]["update"] == [0, 1]
    for group in ("weight_norm", "grad_norm", "update_ratio", "dead_fraction"):
        assert list(a[group]) == list(b[group])
        for name in a[group]:
            np.testing.assert_allclose(a[group][name], b[group][name], rtol=1e-9)
    np.testing.assert_allclose(a["top_prob"], b["top_prob"], rtol=1e-9)
    assert ours.final_model["confusion"] == theirs.final_model["confusion"]
    assert "filters" not in theirs.final_model  # the CNN's images are numnet's only


def test_numnet_layer_names() -> None:
    names = numnet_layer_names(build_twin(build_model(RunSpec(
        model="model4", epochs=1, lr=0.1, conv_activation="relu"))))
    assert names == ["unflatten", "conv1", "act1", "pool1", "conv2", "act2", "pool2", "flatten",
                     "fc1", "relu1", "fc2"]


def test_compare_page_shows_both_implementations(tmp_path) -> None:
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL)
    data = tiny_datasets(n_train=550, n_validation=50, n_test=200)
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(numnet.lab.data, "load", lambda *a, **k: data)
        assert main(["compare", "--protocol", str(protocol), "--out", str(out), "--quiet"]) == 0
    page = (out / "compare.html").read_text()
    assert "Training internals, both implementations" in page
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == [f"{m}-setting1.internals.png" for m in ("model1", "model2", "model4")]
    assert page.count('src="data:image/png;base64,') == 1 + len(figures)
    md = (out / "compare.md").read_text()
    assert "| model2-setting1 | PyTorch |" in md and "(figures/model4-setting1.internals.png)" in md
