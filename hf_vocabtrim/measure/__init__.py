# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Beside the pipeline, measurement on the user's hardware: what the speedup objective of ``selection`` reads.

Open ``assisted_costs.py`` first (``profile_assisted``: the cost model measured inside real ``generate()`` rounds).
``profiling.py`` times the draft's decode step against k; ``instrument.py`` records what assisted rounds draft and
accept (``hf_vocabtrim.hardware`` names the machine a result was measured on).
"""
