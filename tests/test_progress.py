"""Progress bars never use tqdm's notebook widget (whose missing ipywidgets warns into the page)."""

import sys
import types
import warnings

from tqdm.notebook import tqdm as notebook_tqdm
from tqdm.std import tqdm as plain_tqdm

from instab_lib.experiments import progress


def test_progress_is_the_plain_bar_even_in_a_kernel(monkeypatch):
    """In a Jupyter kernel ``tqdm.auto`` resolves to the widget bar; pretend we are in one."""
    monkeypatch.setenv("INSTAB_QUIET", "0")
    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=notebook_tqdm))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an "IProgress not found" TqdmWarning would raise here
        bar = progress.progress(range(3), desc="x")
        assert isinstance(bar, plain_tqdm) and not isinstance(bar, notebook_tqdm)
        assert list(bar) == [0, 1, 2]
