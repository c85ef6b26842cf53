"""Data: IDX files, verified MNIST / Fashion-MNIST acquisition, TensorFlow-style DataSets."""

from numnet.data.datasets import DataSet, Datasets, one_hot, split_like_tensorflow

__all__ = ["DataSet", "Datasets", "one_hot", "split_like_tensorflow"]
