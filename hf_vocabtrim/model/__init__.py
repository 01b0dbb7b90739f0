# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Stage 3, the model: a keep plan applied to a draft, usable as ``generate(assistant_model=...)``.

Open ``modeling_trimmed_draft.py`` first (``TrimmedDraftModel``). It, ``trimmed_head.py`` (the k-row head, the
context slots and the scatter to V) and ``configuration_trimmed_draft.py`` travel with every saved checkpoint
(``trust_remote_code``), so they import only torch and transformers. ``fast_path.py`` decides which assistant calls
take the static-cache / CUDA-graph path of ``static_drafter.py`` (both need the package installed); ``trimming.py``
trims a draft by a keep plan.
"""
