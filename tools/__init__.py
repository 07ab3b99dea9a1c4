"""The course's tooling, which no notebook imports: run notebooks headless (runner), keep them in sync and check them
(notebooks), student copies and grading (instructor), and the stand-in runs with their cost probes (verify, probe)."""
