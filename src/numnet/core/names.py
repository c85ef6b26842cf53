"""The one source of numnet's names and constants: models, dtypes, devices, kernels, data sets.

Every module that validates or lists one of these imports it from here.
"""

from __future__ import annotations

#: the protocol's four models (``models.build`` also takes 1..4 or "Model 3")
MODEL_NAMES = ("model1", "model2", "model3", "model4")
#: what a custom model's name may hold (a protocol's [models.NAME]): it is part of run ids and
#: file names
CUSTOM_MODEL_NAME = r"[A-Za-z][A-Za-z0-9_-]{0,39}"
#: floating-point types a model can be built in (float32 by default; float64 for gradient checks)
DTYPES = ("float32", "float64")
DEFAULT_DTYPE = "float32"
#: where arrays live: NumPy on the host, CuPy on a CUDA device
DEVICES = ("cpu", "cuda")
#: kernel implementations: "plain" (the readable main path), "fast" (fused, buffered, threaded)
KERNELS = ("plain", "fast")
DEFAULT_KERNELS = "fast"
#: data sets numnet knows how to fetch and verify (IDX files, 28x28, 10 classes)
DATASET_NAMES = ("mnist", "fashion-mnist")
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)  # NHWC per image
#: optimisers (``numnet.core.optim``), PyTorch's names in lower case; "sgd" is the protocol's
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
DEFAULT_OPTIMIZER = "sgd"
#: learning-rate schedules (``numnet.core.schedules``); "constant" is the protocol's
SCHEDULES = ("constant", "step", "cosine")
DEFAULT_SCHEDULE = "constant"
