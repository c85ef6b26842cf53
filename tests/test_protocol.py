"""Protocol files: the shipped ones say what docs/protocol.md says; the schema rejects bad files
by key path."""

from __future__ import annotations

import pytest

from numnet.core.errors import ProtocolError
from numnet.lab import protocol

SPEC_SETTINGS = {
    "model1": [(5, 0.0001), (5, 0.005), (5, 0.1)],
    "model2": [(15, 0.0001), (15, 0.005), (15, 0.1)],
    "model3": [(5, 0.003), (40, 0.003), (40, 0.05)],
    "model4": [(5, 0.01), (10, 0.001), (20, 0.001)],
}

MINIMAL = """
[models.model1]
settings = [{ epochs = 5, lr = 0.1 }]
"""


def settings(p: protocol.Protocol) -> dict[str, list[tuple[int, float]]]:
    return {m.name: [(s.epochs, s.lr) for s in m.settings] for m in p.models}


def test_assignment_is_spec() -> None:
    p = protocol.load("assignment")
    assert settings(p) == SPEC_SETTINGS
    assert (p.dataset, p.validation_size, p.batch_size, p.eval_every) == ("mnist", 5000, 100, 200)
    assert (p.eval_train_examples, p.eval_test_examples) == (11000, 10000)
    assert p.dtype == "float32"
    for m in p.models:
        assert (m.reduction, m.weight_init, m.bias_init, m.conv_activation) == (
            "sum", "xavier_uniform", "zeros", "none")


def test_assignment_mean_differs_only_in_reduction() -> None:
    a, m = protocol.load("assignment"), protocol.load("assignment-mean")
    assert settings(m) == SPEC_SETTINGS
    assert all(plan.reduction == "mean" for plan in m.models)
    assert a.hash != m.hash
    as_sum = [p.__class__(**{**p.__dict__, "reduction": "sum"}) for p in m.models]
    assert tuple(as_sum) == a.models


def test_notebook_variant() -> None:
    p = protocol.load("notebook-variant")
    assert settings(p) == SPEC_SETTINGS
    assert [m.reduction for m in p.models] == ["mean", "mean", "mean", "sum"]
    assert {m.bias_init for m in p.models} == {"uniform_sqrt3"}
    assert {m.conv_activation for m in p.models} == {"none"}


def test_load_by_path_and_name_agree(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(protocol.builtin_path("assignment").read_text())
    by_path, by_name = protocol.load(path), protocol.load("assignment")
    assert by_path.hash == by_name.hash
    assert by_path.source == str(path) and by_name.source == "builtin:assignment"


def test_hash_ignores_form_but_not_content() -> None:
    base = protocol.loads(MINIMAL)
    reformatted = protocol.loads(
        '# a comment\nname = "other"\ndescription = "x"\n[models.model1]\n'
        "settings = [ {lr = 0.1, epochs = 5} ]\n"
    )
    assert base.hash == reformatted.hash
    assert protocol.loads(MINIMAL.replace("0.1", "0.2")).hash != base.hash
    assert base.with_seed(1).hash != base.hash
    assert base.quick_variant().hash != base.hash
    assert len(base.hash) == 16 and base.hash == protocol.loads(MINIMAL).hash


def test_defaults_and_model_overrides() -> None:
    p = protocol.loads(
        '[defaults]\nreduction = "mean"\nconv_activation = "relu"\n'
        '[models.model4]\nreduction = "sum"\nsettings = [{ epochs = 1, lr = 0.5 }]\n'
        "[models.model2]\nsettings = [{ epochs = 2, lr = 1 }]\n"
    )
    assert [m.name for m in p.models] == ["model2", "model4"]  # sorted by model number
    assert p.model("model2").reduction == "mean" and p.model("model4").reduction == "sum"
    assert p.model("model4").conv_activation == "relu"
    assert p.model("model2").settings[0].lr == 1.0 and isinstance(p.model("model2").settings[0].lr,
                                                                   float)


def test_quick_variant() -> None:
    q = protocol.load("assignment").quick_variant()
    assert q.quick
    assert {s.epochs for m in q.models for s in m.settings} == {1}
    assert [s.lr for s in q.model("model3").settings] == [0.003, 0.003, 0.05]
    assert (q.eval_every, q.eval_train_examples, q.eval_test_examples) == (50, 2000, 2000)
    assert q.quick_variant() is q


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("colour = 1\n" + MINIMAL, ["unknown key 'colour'"]),
        ("[training]\nbatchsize = 100\n" + MINIMAL, ["unknown key 'training.batchsize'"]),
        ("[models.model1]\nsetings = []\n", ["unknown key 'models.model1.setings'"]),
        ("[models.model1]\nsettings = [{ epochs = 5, lr = 0.1, momentum = 0.9 }]\n",
         ["unknown key 'models.model1.settings[0].momentum'"]),
        (MINIMAL.replace("lr = 0.1", "lr = -0.1"), ["models.model1.settings[0].lr", "positive"]),
        (MINIMAL.replace("lr = 0.1", "lr = 0"), ["models.model1.settings[0].lr", "positive"]),
        (MINIMAL.replace("lr = 0.1", "lr = nan"), ["models.model1.settings[0].lr"]),
        (MINIMAL.replace("lr = 0.1", 'lr = "fast"'), ["models.model1.settings[0].lr", "number"]),
        (MINIMAL.replace("epochs = 5", "epochs = 0"), ["models.model1.settings[0].epochs",
                                                      "positive"]),
        (MINIMAL.replace("epochs = 5", "epochs = -3"), ["settings[0].epochs"]),
        (MINIMAL.replace("epochs = 5", "epochs = 2.5"), ["settings[0].epochs", "integer"]),
        (MINIMAL.replace("epochs = 5", "epochs = true"), ["settings[0].epochs", "integer"]),
        ("[models.model1]\nsettings = [{ epochs = 5 }]\n", ["settings[0].lr is missing"]),
        ("[models.model1]\nsettings = []\n", ["models.model1.settings", "non-empty"]),
        ("[training]\nbatch_size = 55001\n" + MINIMAL,
         ["training.batch_size", "larger than the train split", "55000"]),
        ("[data]\nvalidation_size = 59990\n[training]\nbatch_size = 100\n" + MINIMAL,
         ["training.batch_size", "larger than the train split"]),
        ("[training]\nbatch_size = 0\n" + MINIMAL, ["training.batch_size", "positive"]),
        ("[training]\neval_test_examples = 10001\n" + MINIMAL,
         ["training.eval_test_examples", "at most 10000"]),
        ("[training]\ndtype = \"float16\"\n" + MINIMAL, ["training.dtype", "float16"]),
        ("[models.model5]\nsettings = [{ epochs = 1, lr = 1 }]\n",
         ["models.model5", "unknown model"]),
        ("[data]\ndataset = \"cifar\"\n" + MINIMAL, ["data.dataset", "cifar"]),
        ("[defaults]\nreduction = \"avg\"\n" + MINIMAL, ["defaults.reduction", "'avg'"]),
        ("[models.model1]\nbias_init = \"ones\"\nsettings = [{ epochs = 1, lr = 1 }]\n",
         ["models.model1.bias_init"]),
        ("[quick]\nepochs = 0\n" + MINIMAL, ["quick.epochs", "positive"]),
        ("seed = -1\n" + MINIMAL, ["seed"]),
        ("models = 3\n", ["models must be a table"]),
        ("", ["names no models"]),
        ("[models.model1\n", ["not valid TOML"]),
    ],
)
def test_schema_errors_name_the_key(text: str, fragments: list[str]) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.loads(text, source="bad.toml")
    message = str(info.value)
    assert message.startswith("bad.toml")
    for fragment in fragments:
        assert fragment in message


def test_missing_file_and_unknown_name(tmp_path) -> None:
    with pytest.raises(ProtocolError, match="does not exist"):
        protocol.load(tmp_path / "nope.toml")
    with pytest.raises(ProtocolError, match="unknown protocol 'assignmnet'.*assignment"):
        protocol.load("assignmnet")


def test_select_models_and_check_against_data() -> None:
    p = protocol.load("assignment")
    assert [m.name for m in p.select_models(["model4", "model1"])] == ["model1", "model4"]
    with pytest.raises(ProtocolError, match="no model 'model9'"):
        p.select_models(["model9"])
    protocol.check_against_data(p, 55000, 10000)
    with pytest.raises(ProtocolError, match="eval_train_examples = 11000 is larger"):
        protocol.check_against_data(p, 5000, 10000)
    with pytest.raises(ProtocolError, match="batch_size = 100 is larger"):
        protocol.check_against_data(p, 50, 10000)
    with pytest.raises(ProtocolError, match="eval_test_examples"):
        protocol.check_against_data(p, 55000, 200)
