"""Protocol files: which runs ``numnet reproduce`` makes, read from TOML and checked strictly.

A protocol names the data, the training loop's constants (batch size, evaluation cadence and
sizes), and per model the architecture options, the loss reduction, the initialisation and the
``(epochs, learning rate)`` settings. Three ship inside the package (``numnet/protocols``):
``assignment`` (docs/protocol.md exactly), ``assignment-mean`` (the same with the loss
averaged over the batch) and ``notebook-variant`` (an earlier NumPy solution's choices, see
docs/protocol.md, "Variants"). A user may pass a path to their own.

Layout of a protocol file (every key is checked; unknown keys are errors)::

    name = "assignment"            # optional, defaults to the file name
    description = "..."            # optional
    seed = 0                       # protocol seed; every run derives its own from it

    [data]
    dataset = "mnist"              # "mnist" or "fashion-mnist"
    validation_size = 5000         # first N training images (file order) are validation

    [training]
    batch_size = 100
    eval_every = 200               # updates between two evaluations
    eval_train_examples = 11000    # the first N train examples (file order) are evaluated
    eval_test_examples = 10000     # the first N test examples are evaluated
    eval_batch_size = 1000         # evaluation chunk (memory only; results do not depend on it)
    dtype = "float32"              # or "float64"
    shared_start = false           # true: every setting of a model starts from the same
                                   # weights and sees the same batches (seeds per model)

    [quick]                        # what --quick changes (a smoke run, labelled QUICK)
    epochs = 1                     # every setting runs this many epochs (learning rates kept)
    eval_every = 50
    eval_train_examples = 2000
    eval_test_examples = 2000

    [defaults]                     # per-model options, overridable in [models.<name>]
    reduction = "sum"              # "sum" (the protocol) or "mean" over the batch
    weight_init = "xavier_uniform"   # or "conv_uniform_fan_sum": conv kernels uniform in
                                   # +-sqrt(6 / (kh*kw*c_in*c_out + c_out)), dense Glorot
    bias_init = "zeros"            # or "uniform_sqrt3": U(+-sqrt(3 / n_out))
    conv_activation = "none"       # or "relu", "sigmoid", "tanh" (only model 4 has convs)

    [models.model1]
    settings = [ { epochs = 5, lr = 0.0001 }, { epochs = 5, lr = 0.005 } ]

Errors are :class:`numnet.core.errors.ProtocolError` naming the file and the key path
(``models.model3.settings[1].lr``).
"""

from numnet.core.errors import ProtocolError
from numnet.lab.protocol.checks import MAX_UPDATES_PER_RUN, planned_updates
from numnet.lab.protocol.model import (
    BIAS_INITS,
    BUILTIN_PROTOCOLS,
    CONV_ACTIVATIONS,
    DATASET_SIZES,
    MODEL_OPTION_CHOICES,
    MODEL_OPTION_DEFAULTS,
    QUICK_DEFAULTS,
    REDUCTIONS,
    TRAINING_DEFAULTS,
    WEIGHT_INITS,
    ModelPlan,
    Protocol,
    Setting,
)
from numnet.lab.protocol.parse import (
    NAME_PATTERN,
    builtin_path,
    check_against_data,
    display_path,
    load,
    loads,
    parse,
    resolve,
)

__all__ = [
    "BIAS_INITS",
    "BUILTIN_PROTOCOLS",
    "CONV_ACTIVATIONS",
    "DATASET_SIZES",
    "MAX_UPDATES_PER_RUN",
    "NAME_PATTERN",
    "MODEL_OPTION_CHOICES",
    "MODEL_OPTION_DEFAULTS",
    "QUICK_DEFAULTS",
    "REDUCTIONS",
    "TRAINING_DEFAULTS",
    "WEIGHT_INITS",
    "ModelPlan",
    "Protocol",
    "ProtocolError",
    "Setting",
    "builtin_path",
    "check_against_data",
    "display_path",
    "load",
    "loads",
    "parse",
    "planned_updates",
    "resolve",
]
