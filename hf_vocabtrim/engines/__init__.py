# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Stage 4, serving engines: kept sets and trimmed drafts in the formats vLLM, SGLang and SpecForge load.

Open ``eagle3.py`` first (EAGLE-3 / DFlash heads: read, lint, trim, write). ``export.py`` converts kept sets to and
from engines' token-map files; ``vllm_plugin.py`` is what vLLM loads in every process (guarded registration, the CPU
kernel fix) and ``vllm_model.py`` the model class vLLM builds for a ``TrimmedDraftModel`` folder (k-row head, context
tokens per request, with ``vllm_context.py``); ``vllm_serve.py`` runs vLLM offline and reads its speculative-decoding
metrics (tests, benchmarks, ``--verify-with``).
"""
