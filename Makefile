# Two commands cover the quickstart: `make local` (the whole pipeline on this machine) and `make test`.
# Both create what they need on first use: .venv (the project) and .tools/ (linters that pin their own deps).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools

.PHONY: local test test-floor tools lint clean

$(BIN)/aurax: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 (pinned in the [job] extra) is the CPU wheel on this machine's disk: no CUDA download.
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# aws-sam-cli and checkov pin their own boto3/click/cfn-lint: each gets an environment of its own.
$(TOOLS)/sam/bin/sam:
	$(PYTHON) -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/pip install --quiet 'aws-sam-cli==1.170.0'

$(TOOLS)/checkov/bin/checkov:
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet 'checkov==3.3.30'

tools: $(TOOLS)/sam/bin/sam $(TOOLS)/checkov/bin/checkov

local: $(BIN)/aurax
	$(BIN)/aurax local

# pytest exits 5 when it collected no tests: a broken suite, never a pass (make would report it as plain failure).
PYTEST_COLLECTED = status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; fi; exit $$status

test: $(BIN)/aurax tools
	$(BIN)/python -m pytest -n 2 --dist loadfile; $(PYTEST_COLLECTED)
	$(MAKE) test-floor

# The model and training code against the lowest transformers pyproject.toml accepts, overlaid on the venv
# (transformers 5.17 needs huggingface-hub 1.x, which talks httpx): the declared range is tested, not assumed.
FLOOR := .floor/transformers
FLOOR_PINS := transformers==5.17.0 huggingface-hub==1.33.0 httpx==0.28.1 httpcore==1.0.9
$(FLOOR)/.done: Makefile
	$(BIN)/pip install --quiet --no-deps --target $(FLOOR) $(FLOOR_PINS)
	touch $@

test-floor: $(BIN)/aurax $(FLOOR)/.done
	PYTHONPATH=$(FLOOR) AURAX_EXPECT_TRANSFORMERS=5.17.0 $(BIN)/python -m pytest -n 2 -q tests/model \
		tests/train/test_plan_schedule_guards.py tests/train/test_step.py tests/train/test_run_records.py \
		tests/evaluate/test_generate.py \
		-m "not slow" -k "not baseline"; $(PYTEST_COLLECTED)

lint: $(BIN)/aurax tools
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(TOOLS)/sam/bin/sam validate --lint
	BC_SKIP_MAPPING=TRUE $(TOOLS)/checkov/bin/checkov -f template.yaml --framework cloudformation --skip-download --quiet --compact

clean:
	rm -rf $(VENV) $(TOOLS) .floor .aws-sam .pytest_cache
