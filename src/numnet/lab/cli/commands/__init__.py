"""The handlers of the ``numnet`` commands, one module per parser module of
:mod:`numnet.lab.cli`; each is imported only when one of its commands runs."""
