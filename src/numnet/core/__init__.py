"""numnet's core library: everything needed to build, differentiate and train a model.

Imports only NumPy (and the standard library); never ``numnet.lab``. A test enforces it.

Where to start reading: ``kernels/plain.py`` (each operation's forward and backward as plain
functions, the ones ``docs/derivations.md`` derives), then ``layers.py`` (thin holders of
parameters that call ``layer.ops``, one kernel module), ``losses.py``, ``models.py`` (model
definitions as lists of layer dicts, ``build``) and ``optim.py``. The fast path beside them:
``kernels/fast.py`` (plain's functions, buffered where a measurement showed it pays) and
``kernels/fused.py`` (convolution + max-pool in one step), ``plan.py`` (which layers a model
fuses) and ``runtime.py`` (helper threads and BLAS limits). ``kernels/loops.py`` holds the
index-for-index loop references the tests check everything against.
"""
