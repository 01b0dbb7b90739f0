# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Stage 1, data: chats in, assistant-token counts out.

Open ``counting.py`` first (``count_tokens``). ``chats.py`` loads files, folders, rows or Hub datasets into one
``messages`` column; ``masking.py`` finds the assistant text with the tokenizer's own chat template; ``specials.py``
names the ids a draft must always be able to emit; ``counts.py`` is the counts file (``TokenCounts``, with its
tokenizer hash); ``target_outputs.py`` counts the target's own replies instead of the data's.
"""
