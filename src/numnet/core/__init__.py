"""numnet's core library: everything needed to build, differentiate and train a model.

Imports only NumPy (and the standard library); never ``numnet.lab``. A test enforces it.

Where to start reading: ``kernels/plain.py`` (each operation's forward and backward as plain
functions, the ones ``docs/derivations.md`` derives), then ``layers.py`` (thin holders of
parameters that call the kernels), ``losses.py``, ``models.py`` and ``optim.py``.
"""
