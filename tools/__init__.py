"""The course's tooling, which no notebook imports: run notebooks headless (runner), keep them in sync and check them
(notebooks), student copies and grading (instructor), the gpu check (gpu_check), the import graph of utils/
(imports), and in `tools/hub/` the Hub machinery: manifest, prefetch, the stand-in Hub, and the stand-in runs with
their cost probes (verify, probe)."""
