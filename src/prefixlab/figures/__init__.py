"""Figures, tables and the claims report of Paper A (SPEC 1.7, 1.8).

Every figure function takes the loaded inputs ({key: xarray.Dataset}, keys such as
``eval_r2s_transformer``) and a settings dict, and returns a matplotlib Figure;
``python -m prefixlab.figures`` is the command line the workflow calls.
"""
