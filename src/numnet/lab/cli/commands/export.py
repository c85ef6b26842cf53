"""Handler of ``numnet export``."""

from __future__ import annotations

import argparse
import sys

from numnet.lab import export
from numnet.lab.cli.common import EXIT_FAILED, EXIT_OK


def export_command(args: argparse.Namespace) -> int:
    try:
        done = export.export_weights(args.weights, args.output, force=args.force,
                                     check=not args.no_check)
    except export.ExportCheckError as exc:  # a check failed: exit 1, as compare's does
        print(f"numnet: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    size_kb = done.path.stat().st_size / 1000
    name = (getattr(done.model, "config", {}) or {}).get("name", "model")
    print(f"wrote {done.path} ({name}, ONNX opset {export.OPSET}, {size_kb:.1f} kB)")
    if done.difference is not None:
        print(f"checked by onnxruntime {done.runtime} on {export.CHECK_ROWS} rows: largest "
              f"logit difference from numnet {done.difference:.2g} (allowed "
              f"{export.CHECK_TOLERANCE:g})")
    elif not args.no_check:
        print('not checked: onnxruntime is not installed (pip install "numnet[onnx]")')
    sys.stdout.flush()
    return EXIT_OK
