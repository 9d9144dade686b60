# The two commands of the README's quick start. Each does its own set-up (scripts/setup.sh).
.PHONY: setup book test perturb clean

setup:
	bash scripts/setup.sh

# Executes every notebook of the table of contents at its default (CPU-sized) parameters
# with papermill and builds the HTML book into _build/html (Sphinx warnings are errors).
book:
	bash scripts/setup.sh
	.venv/bin/instab book

# Unit tests (in parallel, one worker per core), then every notebook executed with its claims
# checked and the book built with warnings as errors and opened in headless Chromium
# (scripts/test.sh: two pytest runs, both always run).
test:
	bash scripts/setup.sh --browser
	bash scripts/test.sh

# The perturbation check: every notebook re-executed under ATEN_CPU_CAPABILITY=default,
# =avx2 (where it differs from the native kernels) and shifted seeds, each in its own run
# cache; prints claim × perturbation and writes results/robustness.json (the book's
# Robustness page). A developer's tool: about three times the notebook time of `make test`.
perturb:
	bash scripts/setup.sh
	.venv/bin/instab verify --perturb

clean:
	rm -rf _build book/notebooks book/generated book/_mathjax notebooks/*.ipynb
