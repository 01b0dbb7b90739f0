"""Convert a GGUF checkpoint once into a safetensors folder (fast reloads), outside the repository.

Loading a GGUF file dequantizes it (minutes for 1.5B parameters on 2 cores). ``save_pretrained`` refuses a
GGUF-loaded model, so the model is rebuilt from its config without ``quantization_config`` and saved.

    python benchmarks/gguf_cache.py DIR FILE.gguf --out CACHE_DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def convert_gguf(gguf_dir: str | Path, gguf_file: str, out: str | Path) -> Path:
    """Return a safetensors folder for ``gguf_dir/gguf_file``, converting it on the first call."""
    out = Path(out)
    if (out / "config.json").exists() and (out / "tokenizer_config.json").exists():
        return out
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = type(model)(config)
    clean.load_state_dict(model.state_dict())
    clean.generation_config = model.generation_config
    out.mkdir(parents=True, exist_ok=True)
    clean.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"converted {gguf_file} -> {out} in {time.perf_counter() - t0:.0f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gguf_dir")
    parser.add_argument("gguf_file")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    convert_gguf(args.gguf_dir, args.gguf_file, args.out)


if __name__ == "__main__":
    main()
