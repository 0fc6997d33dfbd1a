#!/usr/bin/env python3
"""PyTorch eager baseline of core/benches/qwen2_train.rs: the same Qwen2 config and batch on the CPU.

transformers' Qwen2ForCausalLM, randomly initialized, f32, attn_implementation="eager" (hidden 256,
intermediate 768, 4 layers, 8 query heads, 2 key/value heads, vocab 1024, untied lm_head), a batch
of 8 x 256 tokens without padding:
  forward           logits of every position under torch.no_grad() (model.eval());
  forward_backward  loss = -mean(log_softmax(logits)[next token]) at every position, backward
                    (model.train(); gradients set to None before each step, outside the clock).
  decode_tiny       generate() with the KV cache, 128 prompts x 48 tokens + 64 sampled (temperature 1,
                    no EOS) with the built-in tiny model's architecture (vocab 54, hidden 128, 4 layers)
  decode_h256       the same with the config above, 32 prompts x 64 tokens + 64
Each is run --warmup times untimed, then --repeats times timed; throughput is batch x seq tokens
over the median time. Prints one JSON line (the same fields as the Rust bench).

Usage: torch_qwen2.py [--threads N] [--batch 8] [--seq 256] [--warmup 2] [--repeats 5] [--only CASE]
Needs `pip install torch transformers`.
"""

import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM

VOCAB, HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS = 1024, 256, 768, 4, 8, 2


def timing(warmup, repeats, step, before=None):
    times = []
    for i in range(warmup + repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        step()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
    return times


def summary(times, tokens):
    median = statistics.median(times)
    return {
        "tokens_per_s": round(tokens / median, 1),
        "median_s": round(median, 6),
        "min_s": round(min(times), 6),
        "best_tokens_per_s": round(tokens / min(times), 1),
        "times_s": [round(t, 6) for t in times],
    }


CASES = ("forward", "forward_backward", "decode_tiny", "decode_h256")


def qwen2(dims, max_positions, **config):
    """A randomly initialized f32 Qwen2ForCausalLM with eager attention and an untied lm_head, of
    dims = (vocab, hidden, intermediate, layers, heads, kv_heads)."""
    vocab, hidden, inter, layers, heads, kv = dims
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        **config,
    )
    model = Qwen2ForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    assert all(p.dtype == torch.float32 for p in model.parameters())
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--only",
        choices=CASES,
        help="run this case alone and print its result only (AQN_BENCH_ONLY of the Rust bench)",
    )
    args = ap.parse_args()
    results = {}

    def wanted(name):
        return args.only is None or args.only == name

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = qwen2((VOCAB, HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS), args.seq + 1, use_cache=False)

    g = torch.Generator().manual_seed(11)
    ids = torch.randint(0, VOCAB, (args.batch, args.seq + 1), generator=g)
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    tokens = args.batch * args.seq

    model.eval()

    def forward():
        with torch.no_grad():
            model(input_ids=inputs, use_cache=False).logits

    if wanted("forward"):
        results["forward"] = summary(timing(args.warmup, args.repeats, forward), tokens)

    model.train()
    last = {}

    def zero():
        model.zero_grad(set_to_none=True)

    def forward_backward():
        logits = model(input_ids=inputs, use_cache=False).logits
        logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1))
        loss = -logp.mean()
        loss.backward()
        last["loss"] = loss.item()

    if wanted("forward_backward"):
        fwd_bwd = timing(args.warmup, args.repeats, forward_backward, before=zero)
        results["loss"] = round(last["loss"], 5)
        results["forward_backward"] = summary(fwd_bwd, tokens)

    # Decoding with the KV cache (transformers' generate): the built-in tiny model's architecture
    # and this config, as core/benches/qwen2_train.rs runs them.
    for name, (vocab, hidden, inter, layers, heads, kv), batch, prompt, new in (
        ("decode_tiny", (54, 128, 384, 4, 4, 2), 128, 48, 64),
        ("decode_h256", (VOCAB, HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS), 32, 64, 64),
    ):
        if not wanted(name):
            continue
        gen_model = qwen2((vocab, hidden, inter, layers, heads, kv), prompt + new + 1)
        gen_model.eval()
        gen_model.generation_config.eos_token_id = None
        gen_model.generation_config.pad_token_id = 0
        prompt_ids = torch.randint(0, vocab, (batch, prompt), generator=g)
        mask = torch.ones_like(prompt_ids)

        def generate():
            with torch.no_grad():
                out = gen_model.generate(
                    input_ids=prompt_ids,
                    attention_mask=mask,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                )
            assert out.shape == (batch, prompt + new), out.shape

        results[name] = summary(timing(args.warmup, args.repeats, generate), batch * new)

    print(
        json.dumps(
            {
                "impl": "pytorch-eager",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "torch_threads": torch.get_num_threads(),
                "config": {
                    "vocab": VOCAB,
                    "hidden": HIDDEN,
                    "intermediate": INTERMEDIATE,
                    "layers": LAYERS,
                    "heads": HEADS,
                    "kv_heads": KV_HEADS,
                },
                "batch": args.batch,
                "seq": args.seq,
                "tokens": tokens,
                "warmup": args.warmup,
                "repeats": args.repeats,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
