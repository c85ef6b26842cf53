"""numnet's core library: everything needed to build, differentiate and train a model.

Imports only NumPy (and the standard library); never ``numnet.lab``. A test enforces it.

Where to start reading: ``kernels/plain.py`` (each operation's forward and backward as plain
functions, the ones ``docs/derivations.md`` derives), then ``layers.py`` (thin holders of
parameters that call the kernels), ``losses.py``, ``models.py`` and ``optim.py``. The fast
path beside them: ``kernels/fast.py`` and ``kernels/fused.py`` (the same operations on kept
buffers, and convolution + max-pool in one step), ``plan.py`` (which layers a model fuses) and
``runtime.py`` (helper threads and BLAS limits). ``kernels/loops.py`` holds the index-for-index
loop references the tests check everything against.
"""
