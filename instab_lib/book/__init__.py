"""The book machinery: the notebook runner, cards and claims, pages, staging, archive, CLI.

This layer may import the library (``instab_lib``) and the experiments
(``instab_lib.experiments``); neither imports it. It is left out of the library
fingerprint (:func:`instab_lib.experiments.fingerprint.library_fingerprint`): editing it
re-executes no notebook. Notebooks import only :class:`instab_lib.book.claims.Recorder`
from here. Modules:

* ``cards`` (a notebook's card and source: loader, claim schema, parameter specs),
  ``verdicts`` (a claim's outcome and verdict, a page's verdict, the expectation comparison),
  ``claims`` (recorded numbers, the ``Recorder``, claim tables), ``notebooks`` (catalogue,
  presets, the papermill runner, verify), ``provenance`` (a page's stamp and provenance box);
* ``staging`` (what a page gets beyond its executed notebook), ``record`` (every claim in every
  column: ``claims.json``, ``claims.csv``), ``pages`` (the claims and paper-scale pages),
  ``robustness`` (the perturbation table's page), ``summary`` and ``findings`` (the intro's
  bottom line, Findings box and table), ``build`` (stage the pages and run Jupyter Book),
  ``archive`` (the paper-scale archive), ``perturb`` (``instab verify --perturb``), ``browser``
  (the headless-Chromium page check), ``cli`` (``instab``).
"""
