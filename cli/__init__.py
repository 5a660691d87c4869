"""The ``fastconv`` command line (installed as the import package ``fastconv_cli``).

``main.py`` holds the Click group and its commands, ``params.py`` the parameter types
("8x8" sizes, kernel specs, layer specs), ``io.py`` loading and atomic saving.
Nothing here imports Numba at import time: ``fastconv --help`` and ``fastconv shape``
start without it.
"""
