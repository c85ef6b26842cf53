"""``numnet export``: the parser (the handler is :mod:`numnet.lab.cli.commands.export`)."""

from __future__ import annotations

from typing import Any

from numnet.lab import export


def register(subparsers: Any) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export",
        help="write a weights file as an ONNX model (onnxruntime, Netron, ...)",
        description=(
            "Write the model saved in a weights file as an ONNX file (opset "
            f"{export.OPSET}): input 'images' float32 (N, 784), outputs 'logits' and "
            "'probabilities' (N, 10), the run's facts (run id, protocol, seed, accuracy) in its "
            "metadata. When onnxruntime is installed it runs the file first and its logits "
            f"must match numnet's within {export.CHECK_TOLERANCE:g}. Needs the onnx package: "
            'pip install "numnet[onnx]".'
        ),
    )
    p.add_argument("weights", metavar="WEIGHTS",
                   help="a weights file saved by train/reproduce (weights/<run>.npz)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="the ONNX file to write, or a folder to write it into (default: beside "
                        "WEIGHTS, same name, .onnx)")
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")
    p.add_argument("--no-check", action="store_true",
                   help="do not run the file with onnxruntime before writing it")
    p.set_defaults(handler="export:export_command")
