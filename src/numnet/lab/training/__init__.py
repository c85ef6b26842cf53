"""One training run: the protocol's loop (docs/protocol.md §2), its evaluations and divergence
detection.

``train_run(spec, data)`` is a pure function of its inputs: the same :class:`RunSpec` on the
same data gives the same :class:`RunResult` (timing fields aside), in this process, in another
one, or on a Dask worker (both classes pickle). Everything random comes from ``spec.seed``,
split by :func:`child_seeds` (``SeedSequence(seed).spawn(2)``) into the *init* seed, which
builds the model (:func:`build_model`), and the *shuffle* seed, which orders the batches
(:func:`make_batch_source`, a TensorFlow-style ``DataSet`` over the train split): the PyTorch
reference calls the same two functions to start from the same weights and batches.

:func:`train_run` (``loop.py``), as it reads (its device and stepper options left out)::

    batches = make_batch_source(spec, data.train)
    stepper = NumnetStepper.for_run(build_model(spec), spec, total)
    run = Run(spec, data, stepper, device, plugins)
    i = 0
    run.started(batches)
    while batches.epochs_completed < spec.epochs:
        i += 1
        x, y = run.on_device(*batches.next_batch(spec.batch_size))
        loss = stepper.loss(x, y)                 # forward and loss
        if not np.isfinite(loss):
            run.diverge(i, "non-finite training loss")   # this update is not applied
            break
        stepper.update()                          # backward and one optimiser step
        run.updated(i, loss)
        if i % spec.eval_every == 0 and not run.evaluate(i):   # a curve point
            break
    return run.finish()

One step, from the loop to the GEMM, in the order the code runs:

1. ``DataSet.next_batch`` (``numnet.core.datasets``): the next 100 images ``(100, 784)`` and
   one-hot labels ``(100, 10)`` of this epoch's shuffled order; ``Run.on_device`` casts them
   to the run's dtype (no copy for float32 on the CPU).
2. ``NumnetStepper.loss`` (``stepper.py``) -> ``Sequential.forward`` (``numnet.core.models``)
   -> each step of the model's plan (a layer, or a fused conv+pool, ``numnet.core.plan``) ->
   ``Linear.forward`` (``numnet.core.layers``) -> ``layer.ops.linear_forward``
   (``numnet.core.kernels.plain``: ``y = x @ W + b``, **the GEMM**, ``(100, 784) @ (784, n)``)
   -> ... -> ``softmax_cross_entropy`` (``numnet.core.losses``): the batch loss and
   dL/dlogits, kept for the update.
3. ``NumnetStepper.update`` -> ``Sequential.backward`` -> each layer's ``backward`` in reverse
   -> ``linear_backward`` (``dW = x.T @ dy``, ``db = dy.sum(0)``, ``dx = dy @ W.T``: two more
   GEMMs; the first layer skips dx) -> ``SGD.step`` (``numnet.core.optim``: ``p -= lr * grad``).
4. Every ``eval_every`` (200) updates ``Run.evaluate``: the parameters checked finite, then
   ``evaluate`` (``stepper.py``) on the first 11,000 train and 10,000 test examples, one
   evaluation forward each (``train=False``), appended to the curves.

With 55,000 examples and batch 100 a run of E epochs makes 550*E + 1 updates
(:func:`expected_updates`) and floor((550*E + 1) / 200) evaluations
(:func:`expected_evaluations`). After the loop the final weights (those saved) are evaluated
once more on the same examples (``RunResult.final_weights``); the curves stay the protocol's.

What is optional is a plug-in (:class:`Plugin`) that a reader can skip: the progress reports
(:class:`Reporter`, display only), the training internals (:class:`Internals`, when
``spec.internals``) and the runs taken from this one (:class:`ShorterRuns`): a run that is a
prefix of another (:func:`prefix_key`: the same spec and seed, fewer epochs) ends inside it at
its last update, identical to training it alone.

Divergence: the batch loss is checked at every update (a scalar, free) and the parameters at
every evaluation. A non-finite value stops the run with status ``"diverged"``; its curves end
at the last good evaluation and ``diverged_at_update`` is the update that produced the
non-finite loss (not applied) or after which the parameters (or the evaluation losses) were
found non-finite.
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
