"""``numnet compare``: a protocol run twice, with numnet and with PyTorch, side by side (Q2).

Every run of the protocol is trained by numnet and by the PyTorch reference
(:mod:`numnet.lab.reference_torch`: the twin of the run's numnet model -- models 1-4 or any
model defined by its layers -- in plain ``torch.nn``, trained with the ``torch.optim``
optimiser the run names at the rates of numnet's schedule, summed or mean loss as the protocol
says), both through numnet's own loop (:func:`numnet.lab.training.train_run` with a PyTorch
*stepper*), so both see **the same initial weights** (the numnet model built from the run's
init seed, copied into PyTorch), **the same batches in the same order** (the run's shuffle
seed) and the same dropout masks, and are evaluated and checked for divergence by the same
code. For a convolutional model PyTorch runs a second time with ``channels_last`` memory
format, for timing.

Per run it records: final and best test accuracy of both, the largest gap between the two
curves, wall time of both and the ratio PyTorch / numnet (> 1: numnet is faster), the status
(``ok`` or ``diverged`` at update N) of each, the diagnosis of each by
:func:`numnet.lab.report.diagnose` (the report's rules), and the float64 agreement below.

Float64 agreement (:func:`float64_agreement`, rules in :mod:`numnet.lab.compare.agreement`):
numnet and PyTorch are the same computation, so in float64, from the same weights on the same
batches, their losses must agree to rounding over the first updates of every run; where a run
amplifies rounding, a control (numnet against itself) and a lockstep check decide instead.

A run that fails raises :class:`AgreementError` after every output is written (the CLI exits
with code 1). Outputs in ``out_dir``::

    compare.json          everything above, per run, plus versions, threads, machine
    compare_curves.png    the 3x4 learning-curve grid, numnet (solid) and PyTorch (dashed)
    compare.html          the Q2 section (self-contained, the figure embedded)
    compare.md            the same for terminals and notebooks
    protocol.toml         the protocol used

Modules: :mod:`~numnet.lab.compare.runner` (both sides through one loop),
:mod:`~numnet.lab.compare.agreement`, :mod:`~numnet.lab.compare.record` (compare.json),
:mod:`~numnet.lab.compare.answers` (the Q2 statements), :mod:`~numnet.lab.compare.render` and
:mod:`~numnet.lab.compare.figure` (the page, the Markdown, the figure).
"""

from numnet.lab.compare.agreement import (
    AGREEMENT_UPDATES,
    CONTROL_TOLERANCE,
    TOLERANCE,
    AgreementError,
    describe_agreement,
    float64_agreement,
)
from numnet.lab.compare.answers import q2_answers, side_by_side_rows
from numnet.lab.compare.figure import overlay_figure
from numnet.lab.compare.record import (
    COMPARE_FORMAT,
    compare_document,
    compare_record,
    load_compare,
    refresh_diagnoses,
)
from numnet.lab.compare.render import (
    format_table,
    q2_section_html,
    render_html,
    render_markdown,
    write_outputs,
)
from numnet.lab.compare.runner import CompareOutcome, run_compare

__all__ = [
    "AGREEMENT_UPDATES",
    "COMPARE_FORMAT",
    "CONTROL_TOLERANCE",
    "TOLERANCE",
    "AgreementError",
    "CompareOutcome",
    "compare_document",
    "compare_record",
    "describe_agreement",
    "float64_agreement",
    "format_table",
    "load_compare",
    "overlay_figure",
    "q2_answers",
    "q2_section_html",
    "refresh_diagnoses",
    "render_html",
    "render_markdown",
    "run_compare",
    "side_by_side_rows",
    "write_outputs",
]
