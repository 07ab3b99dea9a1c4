"""The Hub machinery, apart from the lessons: what each notebook needs from the Hugging Face Hub (manifest), the
stand-in Hub of random-weight models and shipped-data datasets (standin, standin_data, squad_metric) and its server
(server), `make prefetch` (prefetch), and the offline cpu/gpu runs with their cost probes (verify, probe). The
notebooks import none of it; what they need from it (the cache check, the stand-in mark) is in utils.hubcache."""
