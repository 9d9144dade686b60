"""The book machinery: the notebook runner, cards and claims, pages, staging, archive, CLI.

This layer may import the library (``instab_lib``) and the experiments
(``instab_lib.experiments``); neither imports it. It is left out of the library
fingerprint (:func:`instab_lib.experiments.fingerprint.library_fingerprint`): editing it
re-executes no notebook. Notebooks import only :class:`instab_lib.book.claims.Recorder`
from here. Modules:

* ``cards`` (a notebook's card and source: loader, claim schema, parameter specs),
  ``claims`` (recorded numbers, claim checks, a page's verdict), ``notebooks`` (catalogue,
  presets, the papermill runner, verify), ``provenance`` (a page's stamp and provenance box);
* ``staging`` (what a page gets beyond its executed notebook), ``pages`` (the generated
  pages), ``build`` (stage the pages and run Jupyter Book), ``archive`` (the paper-scale
  archive), ``perturb`` (``instab verify --perturb``), ``browser`` (the headless-Chromium page
  check), ``cli`` (``instab``).
"""
