"""instab_lib: the shared library of the instability companion.

One module per idea: ``dln`` (closed-form diagonal linear network), ``curvature``
(Hessian-vector products and eigen-solvers), ``rotation`` (eigenvector and
subspace similarity), ``models``, ``data``, ``optim``, ``train``, ``sweep``,
``plotting``, ``claims`` (recorded numbers and claim checks) and ``notebooks``
(catalogue, presets, papermill runner, book build). Import the modules you need;
nothing heavy is imported here.
"""

__version__ = "0.1.0"
