# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Stage 2, selection: counts in, a keep plan (the ordered ids and the chosen k) out.

Open ``planning.py`` first (``plan``). ``coverage.py`` ranks the ids and gives C(k); ``flops.py`` the draft's
architecture-aware FLOPs and R(k); ``acceptance.py`` the exact tokens per target step tau(k); ``speedup.py`` the cost
model of assisted rounds; ``optimize.py`` Optuna's TPE under the coverage floor, the exact optimum and the Pareto
front; ``guard.py`` data the kept set must also hold on; ``keep_plan.py`` the plan every later step reads;
``report.py`` and ``plotting.py`` the JSON files and the PNG.
"""
