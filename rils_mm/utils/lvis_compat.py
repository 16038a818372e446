"""Let the PyPI ``lvis`` 0.5.3 evaluate under NumPy >= 1.24.

``lvis.eval.LVISEval.accumulate`` casts with ``np.float``, an alias NumPy removed in
1.24 (mmdet's ``LVISMetric`` calls it). Importing this module restores the alias as
the builtin ``float`` it always meant, if it is missing. The LVIS configs import it
through ``custom_imports``; nothing else in rils-mm does.
"""
import numpy as np

if 'float' not in np.__dict__:
    np.float = float  # the alias NumPy < 1.24 had
