"""One training run: the protocol's loop (docs/protocol.md §2), its evaluations and divergence
detection.

``train_run(spec, data)`` is a pure function of its inputs: the same :class:`RunSpec` on the
same data gives the same :class:`RunResult` (timing fields aside), in this process, in another
one, or on a Dask worker (both classes pickle).

Everything random in a run comes from ``spec.seed``, split into two independent children by
:func:`child_seeds` (``numpy.random.SeedSequence(seed).spawn(2)``):

- the *init* seed builds the model (:func:`build_model`, ``models.build(..., seed=init)``);
- the *shuffle* seed drives the mini-batch order (:func:`make_batch_source`, a fresh
  TensorFlow-style ``DataSet`` over the train split seeded with it).

So another implementation (the PyTorch reference) starts from the same weights and sees the
same batches by calling these two functions.

The loop is the protocol's (docs/protocol.md §2), and :func:`train_run` reads as it does::

    i = 0
    while batches.epochs_completed < spec.epochs:
        i += 1
        x, y = batches.next_batch(spec.batch_size)
        loss = stepper.loss(x, y)           # forward and loss (numnet.core.losses)
        if not finite(loss): diverged; break
        stepper.update()                    # backward (model.backward) and one SGD step
        if i % spec.eval_every == 0: evaluate the curve point (train and test examples)

With 55,000 examples and batch 100 a run of E epochs makes 550*E + 1 updates and
floor((550*E + 1) / 200) evaluations (:func:`expected_updates`, :func:`expected_evaluations`).
After the loop the final weights (after update 550*E + 1, the ones saved) are evaluated once
more on the same examples (``RunResult.final_weights``); the curves stay the protocol's.

One training step from the loop to the GEMM, in the order the code runs:
``NumnetStepper.loss`` (``stepper.py``) -> ``Sequential.forward`` (``numnet.core.models``) ->
each layer's ``forward`` (``numnet.core.layers``) -> its kernel (``numnet.core.kernels``:
``linear_forward`` is ``x @ W + b``, one GEMM) -> ``softmax_cross_entropy``
(``numnet.core.losses``); then ``NumnetStepper.update`` -> ``Sequential.backward`` -> each
layer's ``backward`` (``linear_backward``: ``dW = x.T @ dy``, ``dx = dy @ W.T``) ->
``SGD.step`` (``numnet.core.optim``).

What is optional is a plug-in (:class:`Plugin`) that a reader can skip: the progress reports
(:class:`Reporter`, display only), the training internals (:class:`Internals`, when
``spec.internals``) and the runs taken from this one (:class:`ShorterRuns`): a run that is a
prefix of another (:func:`prefix_key`: the same spec and seed, fewer epochs) ends inside it at
its last update, identical to training it alone.

Divergence: the batch loss is checked at every update (a scalar, free) and the parameters at
every evaluation. A non-finite value stops the run with status ``"diverged"``; its curves end
at the last good evaluation and ``diverged_at_update`` is the number of the update that
produced the non-finite loss (that update is not applied) or after which the parameters (or
the evaluation losses) were found non-finite.
"""

from numnet.lab.training.loop import (
    Internals,
    Plugin,
    Reporter,
    Run,
    ShorterRuns,
    build_model,
    child_seeds,
    expected_evaluations,
    expected_updates,
    make_batch_source,
    prefix_key,
    train_run,
)
from numnet.lab.training.spec import STATUS_DIVERGED, STATUS_OK, Progress, RunResult, RunSpec
from numnet.lab.training.stepper import NumnetStepper, evaluate, parameters_finite

__all__ = [
    "STATUS_DIVERGED",
    "STATUS_OK",
    "Internals",
    "NumnetStepper",
    "Plugin",
    "Progress",
    "Reporter",
    "Run",
    "ShorterRuns",
    "RunResult",
    "RunSpec",
    "build_model",
    "child_seeds",
    "evaluate",
    "expected_evaluations",
    "expected_updates",
    "make_batch_source",
    "parameters_finite",
    "prefix_key",
    "train_run",
]
