# Two commands do all set-up on a fresh machine (Python 3.11+ and the package registries):
#   make lab    create .venv if needed, install kit, open JupyterLab on notebooks/
#   make test   create .venv if needed, install kit with its dev extras, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kit-installed

.PHONY: lab test lint bench clean git-filter lab-settings

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kit needs Python 3.11+; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kit)" >/dev/null
	touch $(STAMP)

# after each save, a notebook git sees unchanged (outputs stripped) is not listed by `git status`
LAB_FLAGS := --ContentsManager.post_save_hook=kit._lab.refresh_git_stat

# jupyter refuses to run as root without --allow-root (containers, CI machines)
ROOT_FLAG := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

lab: $(STAMP) git-filter lab-settings
	$(BIN)/jupyter lab $(ROOT_FLAG) $(LAB_FLAGS) notebooks/

test: $(STAMP) git-filter
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# JupyterLab saves outputs into the notebooks you run; git sees them stripped (.gitattributes).
# Idempotent; does nothing outside a git clone. Cell ids are kept (JupyterLab keeps them too).
NBSTRIPOUT := "$(abspath $(BIN))/python" -m nbstripout --keep-id
NB_EXTRA_KEYS := metadata.language_info.codemirror_mode metadata.language_info.file_extension \
  metadata.language_info.mimetype metadata.language_info.nbconvert_exporter \
  metadata.language_info.pygments_lexer metadata.language_info.version
git-filter:
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean '$(NBSTRIPOUT)' && \
	  git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.required true && \
	  git config filter.nbstripout.extrakeys '$(NB_EXTRA_KEYS)' && \
	  git config diff.ipynb.textconv '$(NBSTRIPOUT) -t'; \
	fi

# JupyterLab defaults for this kit (no news pop-up; widget state saved with the notebook, so
# a reopened explorer shows its last state instead of "model not found")
lab-settings:
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@cp etc/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json

lint: $(STAMP)
	$(BIN)/ruff check kit tests benchmarks
	$(BIN)/ruff format --check kit tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_timing.py

clean:
	rm -rf $(VENV)
