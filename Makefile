# The course's commands. Each one sets up .venv first if needed (idempotent) and says what it does.
PY := .venv/bin/python
PROFILE ?= auto

.PHONY: setup course test lab student grade publish verify-hosted llama-server

setup:  ## create .venv: torch first (kept if present), then requirements.txt and the test tools
	@bash scripts/setup.sh --dev

course: setup  ## run every notebook headless (default profile auto), executed copies in runs/, then a summary
	@echo "[course] executing all notebooks with PROFILE=$(PROFILE); executed copies go to runs/"
	@$(PY) -m tools.runner --profile $(PROFILE)

test: setup  ## lint, unit tests, and every notebook executed in the smoke profile with its results checked
	@echo "[test] ruff + pytest (notebooks run in the smoke profile, offline)"
	@$(PY) -m pytest

lab: setup  ## open JupyterLab with the course kernel, from the repository root
	@if [ "$$(id -u)" = 0 ]; then echo "[lab] running as root (as in a Docker container): JupyterLab needs --allow-root there"; fi
	@$(PY) -m jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root)

llama-server:  ## build llama.cpp's llama-server once into .cache/llama-server/ (notebook 07; minutes, needs cmake, g++, PyPI once)
	@echo "[llama-server] building from the llama.cpp sources in the pinned llama-cpp-python archive (CPU only)"
	@$(if $(wildcard $(PY)),$(PY),python3) -m utils.serving build-server

student: setup  ## student copies of every notebook in student/ (git-ignored): solutions stubbed, checks kept, no outputs
	@echo "[student] writing student copies of the notebooks to student/"
	@$(PY) -m tools.instructor student --out student

grade: setup  ## grade completed notebooks: make grade DIR=submissions [CSV=grades.csv]; runs each in smoke, writes a CSV
	@test -n "$(DIR)" || { echo "usage: make grade DIR=<folder> (one subfolder per student, or <student>__<notebook>.ipynb files)"; exit 2; }
	@echo "[grade] executing every notebook in $(DIR) in the smoke profile; executed copies in runs/grading/"
	@$(PY) -m tools.instructor grade "$(DIR)" $(if $(CSV),--csv "$(CSV)")

publish: setup  ## point badges, links and the setup cell at your GitHub copy: make publish REPO=owner/name
	@test -n "$(REPO)" || { echo "usage: make publish REPO=<owner>/<name> (the GitHub repository that will host the course)"; exit 2; }
	@$(PY) -m tools.notebooks publish "$(REPO)"

verify-hosted: setup  ## run the Colab/Kaggle first cell in venvs seeded with each platform's packages (needs PyPI; minutes)
	@$(PY) scripts/verify_hosted.py $(PLATFORM)

# The cpu and gpu profiles offline: a cached Hub (prefetch) or the Hub stand-in (standin, hub, verify). PROFILE=cpu|gpu, NB=05.
.PHONY: prefetch standin hub verify gpu-check
HUB_PROFILE = $(if $(filter gpu,$(PROFILE)),gpu,cpu)

prefetch: setup  ## download what PROFILE (cpu|gpu) needs into the Hugging Face caches (from HF_ENDPOINT), for offline runs; NB=05: one notebook
	@echo "[prefetch] models, datasets and metrics of the $(HUB_PROFILE) profile$(if $(NB), of notebook $(NB)) (needs the Hub: HF_ENDPOINT or the internet)"
	@$(PY) -m tools.hub.prefetch prefetch --profile $(HUB_PROFILE) $(if $(NB),--nb $(NB))

standin: setup  ## build the Hub stand-in's repositories of PROFILE (cpu|gpu) in .cache/standin-hub: published layouts, random weights
	@$(PY) -m tools.hub.standin build --profile $(HUB_PROFILE) $(if $(NB),--nb $(NB))

hub: standin  ## serve the stand-in as a Hub on 127.0.0.1 (PORT=0: a free one); then HF_ENDPOINT=<printed> make prefetch ...
	@echo "[hub] serving .cache/standin-hub; point the libraries at it with the HF_ENDPOINT below (Ctrl-C stops it)"
	@$(PY) -m tools.hub.server $(or $(COURSE_STANDIN_HUB),.cache/standin-hub) --port $(or $(PORT),0)

verify: setup  ## the learner's cpu (gpu) path offline: stand-in served, prefetched into a fresh cache, notebooks cut down; NB=05: one
	@echo "[verify] $(HUB_PROFILE) profile: stand-in Hub served, prefetched, then run offline (random weights: code path and cost, not quality)"
	@$(PY) -m tools.hub.verify --profile $(HUB_PROFILE) $(NB)

gpu-check:  ## on a CUDA machine without internet, in one call of <= 300 s: gpu profile of NB (default 04 06) cut down, as a T4 against the stand-in; wheels from .whl/
	@bash scripts/gpu_check.sh $(NB)
