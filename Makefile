# asgm-detector: `make all` sets up .venv and runs the notebooks on configs/$(PROFILE).yaml;
# `make test` runs the test suite. Executed notebooks land in reports/$(PROFILE)/.
# Real data: `make all PROFILE=bolivar` (Earth Engine) or `make all PROFILE=bolivar IMAGERY=stac`.
PROFILE ?= demo
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG := configs/$(PROFILE).yaml
# IMAGERY=stac|gee|local replaces the profile's imagery source; outputs go to <profile>_<source>.
ifdef IMAGERY
export ASGM_IMAGERY_SOURCE := $(IMAGERY)
REPORTS := reports/$(PROFILE)_$(IMAGERY)
else
REPORTS := reports/$(PROFILE)
endif
SRC := $(shell find src/asgm -name '*.py')
# GRID=full runs the thesis's whole experiment grid in notebook 04 instead of the profile's.
GRID ?= profile
ifeq ($(GRID),full)
GRID_SETTINGS := --set 'experiments.groups=[osm, single_osm, leave_one_out, patch_size, negatives, class_weights]' --set 'experiments.seeds=[0, 1, 2]'
endif
PAPERMILL := $(PY) -m asgm.notebooks --kernel asgm --cwd notebooks -f $(CONFIG)

.PHONY: setup all osm patches train analysis scan monitor test html clean docs readme-figures

all: setup osm patches train analysis scan monitor

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name asgm --display-name "Python (asgm)"
	touch $@

osm: $(REPORTS)/01_osm_features.ipynb
patches: $(REPORTS)/02_patch_generation.ipynb
train: $(REPORTS)/03_train_model.ipynb
analysis: $(REPORTS)/04_results_analysis.ipynb
scan: $(REPORTS)/05_region_scan.ipynb
monitor: $(REPORTS)/06_monitoring.ipynb

$(REPORTS)/01_osm_features.ipynb: notebooks/01_osm_features.ipynb $(CONFIG) $(SRC) | $(STAMP)
$(REPORTS)/02_patch_generation.ipynb: notebooks/02_patch_generation.ipynb $(REPORTS)/01_osm_features.ipynb $(CONFIG) $(SRC) | $(STAMP)
$(REPORTS)/03_train_model.ipynb: notebooks/03_train_model.ipynb $(REPORTS)/02_patch_generation.ipynb $(CONFIG) $(SRC) | $(STAMP)
$(REPORTS)/04_results_analysis.ipynb: notebooks/04_results_analysis.ipynb $(REPORTS)/03_train_model.ipynb $(CONFIG) $(SRC) $(REPORTS)/.grid-$(GRID) | $(STAMP)
$(REPORTS)/04_results_analysis.ipynb: PAPERMILL += $(GRID_SETTINGS)

# Notebook 04 reruns when GRID changes (the stamp of the other value is removed).
$(REPORTS)/.grid-%:
	@mkdir -p $(REPORTS)
	@rm -f $(REPORTS)/.grid-*
	@touch $@
$(REPORTS)/05_region_scan.ipynb: notebooks/05_region_scan.ipynb $(REPORTS)/03_train_model.ipynb $(CONFIG) $(SRC) | $(STAMP)
$(REPORTS)/06_monitoring.ipynb: notebooks/06_monitoring.ipynb $(REPORTS)/05_region_scan.ipynb $(CONFIG) $(SRC) | $(STAMP)

# A notebook is written under a temporary name and renamed only when every cell ran, so a failed
# run is never mistaken for an up-to-date one (the failed copy stays as *.partial.ipynb to inspect).
$(REPORTS)/%.ipynb: notebooks/%.ipynb
	@mkdir -p $(REPORTS)
	$(PAPERMILL) $< $(REPORTS)/$*.partial.ipynb
	mv $(REPORTS)/$*.partial.ipynb $@

# The configuration reference (docs/configuration.md) from src/asgm/config.py.
docs: $(STAMP)
	$(PY) -m asgm.docs

# The README's figures, copied from the demo's figures/demo/ after `make all` (tests/test_docs.py
# fails when the code that draws one changed since).
readme-figures: all
	$(PY) -m asgm.docs figures

html: all
	$(PY) -m asgm.notebooks html $(REPORTS)

test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxschedchunk 1

clean:
	rm -rf data/demo data/contextual data/training_data models figures/*/ reports/*/
