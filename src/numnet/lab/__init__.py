"""numnet's application layer: protocols, training runs, reports, comparisons, sweeps, data
acquisition and the command line, built on :mod:`numnet.core` (imports go one way)."""
