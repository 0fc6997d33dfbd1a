#!/usr/bin/env python3
"""Writes the config.json of the Qwen2.5-1.5B architecture (Qwen/Qwen2.5-1.5B-Instruct's published
hyper-parameters) into a folder, for benchmarks with random weights: no weights are downloaded,
both aqn-native bench and scripts/gpu_bench/hf_baseline.py initialize the same architecture
randomly from this file.

    python3 scripts/gpu_bench/qwen25_config.py --out bench_out/qwen2.5-1.5b
"""

import argparse
import json
import pathlib

# Qwen2.5-1.5B-Instruct config.json (1.54B parameters, tied embeddings).
QWEN25_1P5B = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 1536,
    "initializer_range": 0.02,
    "intermediate_size": 8960,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 12,
    "num_hidden_layers": 28,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=pathlib.Path, help="folder to write config.json into")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(QWEN25_1P5B, indent=2) + "\n")
    print(f"wrote {args.out / 'config.json'}")


if __name__ == "__main__":
    main()
