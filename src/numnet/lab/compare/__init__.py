"""``numnet compare``: a protocol run twice, with numnet and with PyTorch, side by side (Q2).

Every run of the protocol is trained by numnet and by the PyTorch reference
(:mod:`numnet.lab.reference_torch`: the twin of the run's numnet model in plain ``torch.nn``,
trained with the ``torch.optim`` optimiser the run names at the rates of numnet's schedule),
both through numnet's own loop (:func:`numnet.lab.training.train_run` with a PyTorch
*stepper*), so both see **the same initial weights**, **the same batches in the same order**
and the same dropout masks, and are evaluated and checked for divergence by the same code. For
a convolutional model PyTorch runs a second time with ``channels_last`` memory format, for
timing. Then the float64 agreement (:mod:`~numnet.lab.compare.agreement`) of each run; a run
that fails it raises :class:`AgreementError` after every output is written (the CLI exits 1).

Outputs in ``out_dir``::

    compare.json          per run: both implementations' results, accuracies, gaps, times and
                          their ratio, stability, diagnoses, the float64 agreement; versions,
                          threads, machine (:mod:`~numnet.lab.compare.record`)
    compare_curves.png    the 3x4 learning-curve grid, numnet (solid) and PyTorch (dashed)
    figures/              per run, both implementations' training internals overlaid
    compare.html          the Q2 section (:mod:`~numnet.lab.compare.answers`), the internals
                          (self-contained, the figures embedded)
    compare.md            the same for terminals and notebooks
    protocol.toml         the protocol used
"""

from numnet.lab.compare.agreement import AgreementError, float64_agreement
from numnet.lab.compare.answers import q2_answers
from numnet.lab.compare.record import COMPARE_FORMAT, load_compare
from numnet.lab.compare.render import format_table, q2_section_html, write_outputs
from numnet.lab.compare.runner import CompareOutcome, run_compare

__all__ = [
    "COMPARE_FORMAT",
    "AgreementError",
    "CompareOutcome",
    "float64_agreement",
    "format_table",
    "load_compare",
    "q2_answers",
    "q2_section_html",
    "run_compare",
    "write_outputs",
]
