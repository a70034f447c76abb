"""scalelaw: measure, fit, predict and decide with scaling laws for sparse attention.

Importing this package is light: no torch, no PyMC until a fit or a measurement needs them.
"""

__version__ = "0.1.0"
