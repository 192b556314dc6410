# Tandem: `make demo` (set up, then caption a real code-switched clip live) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL_DIR ?= models
export TANDEM_MODEL_DIR ?= $(abspath $(MODEL_DIR))

.PHONY: setup venv venv-torch protos models demo test test-unit eval load peers peers-setup compose-config clean

setup: venv protos models

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	# the generated stubs (gen/, made by `make protos`) are importable from the venv
	$(PY) -c "import site; open(site.getsitepackages()[0] + '/tandem_gen.pth', 'w').write('$(abspath gen)\n')"
	touch $@

# The optional openai-whisper (torch, CPU build) engine: needed by the tests, not by the demo.
venv-torch: $(VENV)/.installed-torch
$(VENV)/.installed-torch: $(VENV)/.installed requirements-torch.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-torch.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps openai-whisper==20250625
	touch $@

# The one command that generates the gRPC stubs (into gen/, not committed).
protos: $(VENV)/.installed
	$(PY) scripts/gen_protos.py

models: $(VENV)/.installed
	$(PY) scripts/fetch_models.py --model-dir $(MODEL_DIR)

demo: setup
	$(VENV)/bin/tandem demo $(if $(FILE),$(FILE)) $(if $(LANGUAGES),--languages $(LANGUAGES))

# Everything on the default (CTranslate2) engine, then the ASR integration suites (end to end,
# bilingual mechanisms) on the torch engine.
test: setup venv-torch
	$(PY) -m pytest -ra $(PYTEST_ARGS)
	TANDEM_ASR_ENGINE=torch $(PY) -m pytest -ra tests/test_pipeline.py tests/test_bilingual_integration.py $(PYTEST_ARGS)

test-unit: venv protos
	$(PY) -m pytest -ra -m "not integration" $(PYTEST_ARGS)

# Benchmarks (README, Benchmarks). MANIFEST may name any manifest in the ../shared/eval format.
MANIFEST ?=
EVAL_ARGS ?=
eval: setup
	$(PY) -m bench.eval $(if $(MANIFEST),--manifest $(MANIFEST)) $(EVAL_ARGS)

# make load [PEERS=wlk,wlk-simul,wl|none] [LOAD_ARGS=...]: the peers run first, in the same run
# (their venvs from peers-setup), and the capacity table shows them beside our configs.
PEERS ?= wlk,wlk-simul,wl
WITH_PEERS := $(filter-out none,$(PEERS))
load: setup venv-torch $(if $(WITH_PEERS),peers-setup)
	$(PY) -m bench.load $(if $(MANIFEST),--manifest $(MANIFEST)) $(if $(WITH_PEERS),--run-peers $(WITH_PEERS)) $(LOAD_ARGS)

# WhisperLiveKit and WhisperLive on the same Whisper base weights and clips (bench/peers/),
# each in its own venv under .peers/: make peers [QUICK=1] [MANIFEST=path] [PEERS=wlk,wlk-simul,wl]
peers-setup:
	bash bench/peers/setup.sh

peers: setup venv-torch peers-setup
	$(PY) bench/peers/run_peers.py --out reports/peers.json --peers $(PEERS) \
		$(if $(MANIFEST),--manifest $(MANIFEST)) $(if $(QUICK),--quick)

compose-config:
	docker-compose -f docker-compose.yml config --quiet

clean:
	rm -rf gen $(VENV)
