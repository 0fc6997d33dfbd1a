#!/usr/bin/env python3
"""The HF transformers (PyTorch) baseline of `aqn-native bench`: the same random-weight model
(a config.json from scripts/gpu_bench/qwen25_config.py), the same batched sampling rollout
(temperature 1, full vocabulary, every row generating exactly --new-tokens) and the same policy
forward+backward (log-probabilities of the response tokens, mean, backward), timed the same way
(one warm-up, then the median of --repeats runs, each closed by a device synchronization).

    python3 scripts/gpu_bench/hf_baseline.py --model bench_out/qwen2.5-1.5b \
        --batch 8 --prompt-len 128 --new-tokens 128 --json bench_out/hf.json \
        --compare bench_out/aqn.json

With --compare, prints the ratios aqn / transformers and adds them to the JSON.
Needs `pip install torch transformers`; runs on CUDA when available (--device to choose).
"""

import argparse
import json
import pathlib
import statistics
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernel selection, allocator, caches
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=pathlib.Path, help="folder holding config.json")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="float32 matches aqn-native (f32 weights and activations)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--attn", default="sdpa", help="transformers attn_implementation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    parser.add_argument("--compare", type=pathlib.Path, help="aqn-native bench --json output to compare with")
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    config = AutoConfig.from_pretrained(args.model)
    # transformers renamed `torch_dtype` to `dtype` in 4.56.
    version = tuple(int(v) for v in transformers.__version__.split(".")[:2])
    dtype_kw = "dtype" if version >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_config(
        config, attn_implementation=args.attn, **{dtype_kw: dtype}
    ).to(device)
    vocab = config.vocab_size
    b, p, t = args.batch, args.prompt_len, args.new_tokens
    gen = torch.Generator(device="cpu").manual_seed(args.seed)

    # Rollout: batched sampling with the KV cache, exactly t new tokens per row.
    prompts = torch.randint(0, vocab, (b, p), generator=gen).to(device)
    mask = torch.ones_like(prompts)

    def rollout():
        with torch.no_grad():
            out = model.generate(
                input_ids=prompts,
                attention_mask=mask,
                max_new_tokens=t,
                min_new_tokens=t,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=0,
            )
        assert out.shape == (b, p + t), out.shape

    model.eval()
    rollout_s = median_seconds(rollout, device, args.repeats)

    # One policy update's forward + backward over prompt + response.
    ids = torch.randint(0, vocab, (b, p + t), generator=gen).to(device)
    model.train()

    def step():
        logits = model(input_ids=ids).logits
        logp = torch.log_softmax(logits[:, p - 1 : p + t - 1].float(), dim=-1)
        picked = logp.gather(-1, ids[:, p : p + t].unsqueeze(-1))
        (-picked.mean()).backward()
        model.zero_grad(set_to_none=True)

    step_s = median_seconds(step, device, args.repeats)

    result = {
        "framework": "transformers",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "dtype": args.dtype,
        "parameters": sum(x.numel() for x in model.parameters()),
        "batch": b,
        "prompt_len": p,
        "new_tokens": t,
        "rollout": {"seconds": rollout_s, "tokens_per_s": b * t / rollout_s},
        "grpo_step": {"seconds": step_s, "tokens_per_s": b * (p + t) / step_s},
    }
    if args.compare:
        aqn = json.loads(args.compare.read_text())
        for key in ("batch", "prompt_len", "new_tokens"):
            if aqn["model"][key] != result[key]:
                raise SystemExit(f"{args.compare}: {key} {aqn['model'][key]} != {result[key]}: not the same workload")
        if aqn["model"]["parameters"] != result["parameters"]:
            print(f"warning: aqn-native's model has {aqn['model']['parameters']} parameters, "
                  f"transformers' {result['parameters']}: check that both read the same config.json")
        ratios = {
            "rollout_tokens_per_s_aqn_over_hf": aqn["model"]["rollout"]["tokens_per_s"] / result["rollout"]["tokens_per_s"],
            "grpo_step_speedup_aqn_over_hf": result["grpo_step"]["seconds"] / aqn["model"]["grpo_step"]["seconds"],
        }
        result["ratios"] = ratios
        print(f"rollout tokens/s: aqn {aqn['model']['rollout']['tokens_per_s']:.1f}, "
              f"transformers {result['rollout']['tokens_per_s']:.1f} "
              f"(ratio {ratios['rollout_tokens_per_s_aqn_over_hf']:.2f}, target >= 1)")
        print(f"GRPO step: aqn {aqn['model']['grpo_step']['seconds']:.3f} s, "
              f"transformers {result['grpo_step']['seconds']:.3f} s "
              f"(speed-up {ratios['grpo_step_speedup_aqn_over_hf']:.2f})")
        for q in aqn.get("quantize", []):
            print(f"fake-quantize {q['format']}: {q['gb_per_s']:.3g} GB/s = "
                  f"{100 * q['ratio_to_copy']:.0f}% of the device copy ({q['copy_gb_per_s']:.3g} GB/s; target >= 50%)")
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
