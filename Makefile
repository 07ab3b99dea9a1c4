# The course's commands. Each one sets up .venv first if needed (idempotent) and says what it does.
PY := .venv/bin/python
PROFILE ?= auto

.PHONY: setup course test lab

setup:  ## create .venv: torch first (kept if present), then requirements.txt and the test tools
	@bash scripts/setup.sh --dev

course: setup  ## run every notebook headless (default profile auto), executed copies in runs/, then a summary
	@echo "[course] executing all notebooks with PROFILE=$(PROFILE); executed copies go to runs/"
	@$(PY) -m utils.runner --profile $(PROFILE)

test: setup  ## lint, unit tests, and every notebook executed in the smoke profile with its results checked
	@echo "[test] ruff + pytest (notebooks run in the smoke profile, offline)"
	@$(PY) -m pytest

lab: setup  ## open JupyterLab with the course kernel, from the repository root
	@$(PY) -m jupyter lab
