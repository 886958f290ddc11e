"""gen-bundle: render a reviewable Windows deployment bundle for a Jupyter server.

Kept import-light on purpose: the console script imports this package first,
and start-up time is measured (benchmarks/startup.py).
"""

__version__ = "0.3.18"
