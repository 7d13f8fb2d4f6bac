"""Cost of one SEAM step against one SFT step, on the same model and batch shape.

SFT step: forward + backward on one batch + optimizer step. SEAM step: ``seam_step``
on an adversarial, an alignment and a benign batch of that shape (beta = 0.01, so
the estimator's perturbed passes run) + optimizer step. Batches are random tokens,
all labelled. Prints the time ratio, tokens/s (batch x seq tokens of one stream per
step, divided by the step time) and the peak memory of each phase.

On a CPU the process keeps its freed memory mapped, as ``protect`` does (seamharden.cpu_memory;
``--default-allocator`` leaves glibc's malloc alone, for comparison).

Peak memory: CUDA -> torch.cuda.max_memory_allocated, reset before each phase. CPU ->
the process's resident set size, sampled every 2 ms by a thread with psutil when it
is installed (per phase), else resource.ru_maxrss (lifetime peak: the SEAM phase
runs second, so its figure is max(SFT, SEAM)). ``memory_method`` says which.

``--lens full`` times the pre-chunking bounded logit lens (every position, one
checkpointed [B, T, V] logits per layer) for comparison; ``--prompt-fraction`` masks
that leading fraction of each row as prompt (label -100), as real data does.

    python benchmarks/step_cost.py --model tiny --steps 3 --warmup 1 --threads 1
    python benchmarks/step_cost.py --model llama-small --threads 1 --hvp-graph recompute
    python benchmarks/step_cost.py --model smollm2-shape --batch 4 --seq 64 --difference forward --threads 2
    python benchmarks/step_cost.py --model llama2-7b-shape --dtype bf16 --batch 4 --seq 256 \
        --gradient-checkpointing --optimizer adamw8bit --steps 5 --warmup 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from seamharden.core import losses
from seamharden.core.estimator import DEFAULT_DIFFERENCE, DEFAULT_HVP_GRAPH
from seamharden.core.losses import lm_loss
from seamharden.core.step import SeamConfig, folds_unlearning, seam_step
from seamharden.cpu_memory import keep_freed_memory

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SHAPES = {
    "llama2-7b-shape": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                            num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096),
    "smollm2-shape": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                          num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048),
    "llama-small": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                        num_key_value_heads=8, vocab_size=8192, max_position_embeddings=1024),
}
GIB = 2**30


def build_model(name: str, dtype: torch.dtype, device: torch.device, attn: str = "sdpa"):
    """``tiny`` (seamharden.tiny Llama), a named Llama shape with random init, or a model directory."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    if name == "tiny":
        from seamharden.tiny import build_tiny_model

        model = build_tiny_model("llama", attn_implementation=attn).to(dtype)
    elif name in SHAPES:
        torch.manual_seed(0)
        config = LlamaConfig(tie_word_embeddings=name == "smollm2-shape", **SHAPES[name])
        with device:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    elif Path(name).is_dir():
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, attn_implementation=attn)
    else:
        raise SystemExit(f"error: --model {name}: not tiny, {', '.join(SHAPES)} or a model directory")
    return model.to(device).train()


def random_batch(vocab: int, batch: int, seq: int, device: torch.device, seed: int,
                 prompt_fraction: float = 0.0) -> dict[str, torch.Tensor]:
    """Random tokens; the first ``prompt_fraction`` of each row is prompt (label -100), the rest learned."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, seq), generator=gen)
    labels = ids.clone()
    labels[:, :int(seq * prompt_fraction)] = -100
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}


def build_optimizer(kind: str, params, lr: float = 2e-5):
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    import bitsandbytes as bnb

    cls = {"adamw8bit": bnb.optim.AdamW8bit, "paged_adamw8bit": bnb.optim.PagedAdamW8bit}[kind]
    return cls(params, lr=lr)


class PeakMemory:
    """Peak memory of a phase, by the best method available on the device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.psutil = None
        if device.type != "cuda":
            try:
                import psutil

                self.psutil = psutil.Process()
            except ImportError:
                pass
        self.method = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                       else "psutil rss sampled every 2 ms" if self.psutil else "resource.ru_maxrss (lifetime peak)")

    @contextmanager
    def measure(self, out: dict):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            yield
            torch.cuda.synchronize()
            out["peak_gib"] = torch.cuda.max_memory_allocated() / GIB
        elif self.psutil is not None:
            peak, stop = [self.psutil.memory_info().rss], threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], self.psutil.memory_info().rss)
                    time.sleep(0.002)

            thread = threading.Thread(target=sample, daemon=True)
            thread.start()
            try:
                yield
            finally:
                stop.set()
                thread.join()
            out["peak_gib"] = peak[0] / GIB
        else:
            yield
            scale = 1 if sys.platform == "darwin" else 1024
            out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / GIB


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_phase(step, optimizer, device: torch.device, steps: int,
               warmup: int) -> tuple[float, float, float, list[float]]:
    """Mean (wall, process CPU) seconds and minor page faults of ``step(); optimizer.step(); zero_grad``
    over ``steps`` after ``warmup``, and each step's wall seconds (a median resists a noisy box).

    On a shared box the CPU time of a 1-thread run depends far less on the other load than the wall time.
    The page faults show what seamharden.cpu_memory saves on a CPU (each is a fresh page the kernel zero-fills).
    """
    for _ in range(warmup):
        timed_step(step, optimizer, device)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = [timed_step(step, optimizer, device) for _ in range(steps)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return (sum(t[0] for t in times) / steps, sum(t[1] for t in times) / steps, faults / steps,
            [t[0] for t in times])


def timed_step(step, optimizer, device: torch.device) -> tuple[float, float]:
    """(wall, process CPU) seconds of one ``step(); optimizer.step(); zero_grad``."""
    _sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    step()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def setup(args, checkpointing: bool = False):
    """Threads, device, dtype and the model of ``args`` (gradient checkpointing if asked and ``checkpointing``);
    returns (device, dtype, model, trainable parameters)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu" and not args.default_allocator:
        keep_freed_memory()  # as protect and the attack suite do on a CPU
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    model = build_model(args.model, dtype, device)
    if checkpointing and args.gradient_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
        model.config.use_cache = False
    return device, dtype, model, [p for p in model.parameters() if p.requires_grad]


def three_batches(args, vocab: int, device: torch.device) -> tuple:
    """The adversarial, alignment and benign batches (random tokens, seeds 1, 2, 3)."""
    return tuple(random_batch(vocab, args.batch, args.seq, device, seed, args.prompt_fraction) for seed in (1, 2, 3))


def lens_only(args) -> dict:
    """Median seconds of the L_ul forward + backward (bounded lens) with the chunked and the full lens, interleaved.

    Alternating the two (``--steps`` rounds) keeps a shared box's load from favouring either.
    """
    from seamharden.core.losses import adversarial_losses

    device, dtype, model, params = setup(args)
    adv = random_batch(model.config.vocab_size, args.batch, args.seq, device, 1, args.prompt_fraction)
    chunked = losses.bounded_lens_loss
    times: dict[str, list[float]] = {"chunked": [], "full": []}
    for i in range(args.warmup + args.steps):
        for name, fn in (("chunked", chunked), ("full", losses.bounded_lens_loss_full)):
            losses.bounded_lens_loss = fn
            _sync(device)
            start = time.perf_counter()
            _, loss_ul = adversarial_losses(model, adv, "bounded_lens")
            torch.autograd.backward(loss_ul, inputs=params)
            _sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
            for p in params:
                p.grad = None
    losses.bounded_lens_loss = chunked
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"model": args.model, "dtype": str(dtype).removeprefix("torch."), "device": describe_device(device),
            "batch": args.batch, "seq": args.seq, "prompt_fraction": args.prompt_fraction, "rounds": args.steps,
            "ul_fwd_bwd_s": medians, "speedup": medians["full"] / medians["chunked"]}


def compare_hvp_graph(args) -> dict:
    """Median wall and CPU (process) seconds of an SFT step and the SEAM step with ``hvp_graph`` recompute and
    reuse, interleaved step by step in one process (``--steps`` rounds after ``--warmup``), optimizer included.

    On a shared box the wall time of one phase depends on what else runs meanwhile; alternating
    the three steps spreads the load over all of them, and the process CPU time (1 thread) is
    nearly independent of it.
    """
    device, dtype, model, params = setup(args, checkpointing=True)
    adv, aln, bgn = three_batches(args, model.config.vocab_size, device)
    optimizer = build_optimizer(args.optimizer, params)
    steps = {"sft": lambda: lm_loss(model, adv).backward()}
    for graph in ("recompute", "reuse"):
        cfg = SeamConfig(beta=0.01, unlearn_loss=args.unlearn_loss, difference="hvp", lens_stride=args.lens_stride,
                         hvp_graph=graph)
        steps[graph] = lambda cfg=cfg: seam_step(model, adv, aln, bgn, cfg, params=params)
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.warmup + args.steps):
        for name, step in steps.items():
            seconds, cpu_seconds = timed_step(step, optimizer, device)
            if i >= args.warmup:
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
    result = {"model": args.model, "dtype": str(dtype).removeprefix("torch."), "device": describe_device(device),
              "batch": args.batch, "seq": args.seq, "prompt_fraction": args.prompt_fraction, "rounds": args.steps,
              "warmup": args.warmup, "lens_stride": args.lens_stride,
              "wall_s": {k: statistics.median(v) for k, v in wall.items()},
              "cpu_s": {k: statistics.median(v) for k, v in cpu.items()}}
    for clock in ("wall", "cpu"):
        times = result[f"{clock}_s"]
        result[f"{clock}_ratio"] = {g: times[g] / times["sft"] for g in ("recompute", "reuse")}
    return result


def breakdown(args) -> dict:
    """Median process CPU seconds of the pieces of a step on the adversarial batch (``--steps`` repetitions after
    ``--warmup``): forward; forward + backward; forward + graph-building backward (math kernel); that + one double
    backward (random grad_tensors); the adversarial forward + bounded-lens backward. No optimizer step."""
    from seamharden.core.estimator import math_attention
    from seamharden.core.losses import adversarial_losses

    device, dtype, model, params = setup(args)
    batch = random_batch(model.config.vocab_size, args.batch, args.seq, device, 1, args.prompt_fraction)

    def forward():
        with torch.no_grad():
            lm_loss(model, batch)

    def graph_building():
        with math_attention():
            return torch.autograd.grad(lm_loss(model, batch), params, create_graph=True)

    def double_backward():
        grads = graph_building()
        with math_attention():
            torch.autograd.backward(grads, grad_tensors=[torch.randn_like(g) for g in grads], inputs=params)
        for p in params:
            p.grad = None

    pieces = {
        "forward": forward,
        "forward_backward": lambda: torch.autograd.grad(lm_loss(model, batch), params),
        "forward_graph_building_backward": graph_building,
        "forward_graph_building_backward_double_backward": double_backward,
        "adversarial_forward_lens_backward": lambda: torch.autograd.grad(
            adversarial_losses(model, batch, "bounded_lens", args.lens_stride)[1], params),
    }
    cpu: dict[str, list[float]] = {name: [] for name in pieces}
    for i in range(args.warmup + args.steps):
        for name, piece in pieces.items():
            _sync(device)
            start = time.process_time()
            piece()
            _sync(device)
            if i >= args.warmup:
                cpu[name].append(time.process_time() - start)
    return {"model": args.model, "dtype": str(dtype).removeprefix("torch."), "device": describe_device(device),
            "batch": args.batch, "seq": args.seq, "repetitions": args.steps,
            "cpu_s": {name: statistics.median(t) for name, t in cpu.items()}}


def run(args) -> dict:
    device, dtype, model, params = setup(args, checkpointing=True)
    adv, aln, bgn = three_batches(args, model.config.vocab_size, device)
    if args.lens == "full":
        losses.bounded_lens_loss = losses.bounded_lens_loss_full
    cfg = seam_config(args)
    memory = PeakMemory(device)
    tokens = args.batch * args.seq
    result = {
        "model": args.model, "parameters": sum(p.numel() for p in params), "dtype": str(dtype).removeprefix("torch."),
        "device": describe_device(device),
        "batch": args.batch, "seq": args.seq, "gradient_checkpointing": args.gradient_checkpointing,
        "optimizer": args.optimizer, "difference": args.difference, "unlearn_loss": args.unlearn_loss,
        "lens": args.lens, "prompt_fraction": args.prompt_fraction, "self_check": cfg.self_check,
        "lens_stride": cfg.lens_stride, "hvp_graph": cfg.hvp_graph if cfg.difference == "hvp" else None,
        "unlearn_pass": cfg.unlearn_pass, "steps": args.steps, "warmup": args.warmup, "memory_method": memory.method,
        "cpu_allocator": None if device.type != "cpu" else "default" if args.default_allocator else "freed memory kept",
    }

    def sft():
        lm_loss(model, adv).backward()

    def seam():
        seam_step(model, adv, aln, bgn, cfg, params=params)

    for name, step in (("sft", sft), ("seam", seam)):
        optimizer = build_optimizer(args.optimizer, params)
        phase: dict = {}
        with memory.measure(phase):
            phase["step_s"], phase["cpu_step_s"], phase["minor_faults_per_step"], each = time_phase(
                step, optimizer, device, args.steps, args.warmup)
        phase["step_s_median"], phase["step_s_each"] = statistics.median(each), each
        phase["tokens_per_s"] = tokens / phase["step_s"]
        result[name] = phase
        del optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result["time_ratio"] = result["seam"]["step_s"] / result["sft"]["step_s"]
    result["cpu_time_ratio"] = result["seam"]["cpu_step_s"] / result["sft"]["cpu_step_s"]
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny | llama-small | smollm2-shape | llama2-7b-shape | PATH")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--optimizer", choices=["adamw", "adamw8bit", "paged_adamw8bit"], default="adamw")
    parser.add_argument("--difference", choices=["hvp", "central", "forward"], default=DEFAULT_DIFFERENCE)
    parser.add_argument("--no-self-check", action="store_true",
                        help="central/forward without the h/2 self-check (half the perturbed passes)")
    parser.add_argument("--hvp-graph", choices=["reuse", "recompute"], default=DEFAULT_HVP_GRAPH,
                        help="seam.hvp_graph (hvp only): one double backward through the kept graphs of g_a and g_b, "
                        "or recompute each side's graph")
    parser.add_argument("--lens", choices=["chunked", "full"], default="chunked",
                        help="bounded logit lens: labelled positions in chunks (current) or every position (old)")
    parser.add_argument("--lens-stride", type=int, default=1,
                        help="seam.lens_stride: the bounded lens over every k-th layer and the last (1 = all)")
    parser.add_argument("--prompt-fraction", type=float, default=0.0, help="leading fraction of each row unlabelled")
    parser.add_argument("--unlearn-loss", choices=["bounded_lens", "ascent"], default="bounded_lens")
    parser.add_argument("--unlearn-pass", choices=["own", "perturbed"], default="own",
                        help="seam.unlearn_pass: grad L_ul from its own backward at theta, or folded into the "
                        "perturbed adversarial pass (unchecked forward/central only)")
    parser.add_argument("--lens-only", action="store_true",
                        help="time only the L_ul forward + backward, chunked vs full lens, interleaved")
    parser.add_argument("--compare-hvp-graph", action="store_true",
                        help="SFT, hvp recompute and hvp reuse steps interleaved in one process: median wall and CPU s")
    parser.add_argument("--breakdown", action="store_true",
                        help="median CPU s of a step's pieces (forward, backward, graph-building backward, double "
                        "backward, lens)")
    parser.add_argument("--default-allocator", action="store_true",
                        help="CPU: leave glibc's malloc as it is (protect keeps freed memory, seamharden.cpu_memory)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        folds_unlearning(seam_config(args))  # refuses what cannot fold before a model is built
    except ValueError as error:
        parser.error(str(error))
    return args


def seam_config(args) -> SeamConfig:
    """The timed SEAM step's settings (beta 0.01, so the estimator runs) from the command line."""
    return SeamConfig(beta=0.01, unlearn_loss=args.unlearn_loss, difference=args.difference,
                      self_check=not args.no_self_check, lens_stride=args.lens_stride, hvp_graph=args.hvp_graph,
                      unlearn_pass=args.unlearn_pass)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.lens_only:
        result = lens_only(args)
        times = result["ul_fwd_bwd_s"]
        print(json.dumps(result) if args.json else
              f"{result['model']} batch {args.batch} x {args.seq}: L_ul fwd+bwd chunked {times['chunked']:.3f} s, "
              f"full {times['full']:.3f} s, speed-up {result['speedup']:.2f}x")
        return 0
    if args.breakdown:
        result = breakdown(args)
        print(json.dumps(result) if args.json else "\n".join(f"{k}: {v:.3f} s" for k, v in result["cpu_s"].items()))
        return 0
    if args.compare_hvp_graph:
        result = compare_hvp_graph(args)
        print(json.dumps(result) if args.json else
              f"{result['model']} batch {args.batch} x {args.seq}, {args.steps} interleaved rounds: " + "; ".join(
                  f"{clock} SFT {result[f'{clock}_s']['sft']:.3f} s, recompute {result[f'{clock}_s']['recompute']:.3f}"
                  f" s ({result[f'{clock}_ratio']['recompute']:.2f}x), reuse {result[f'{clock}_s']['reuse']:.3f} s "
                  f"({result[f'{clock}_ratio']['reuse']:.2f}x)" for clock in ("wall", "cpu")))
        return 0
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']} ({result['parameters']:,} params, {result['dtype']}) on {result['device']}; "
          f"batch {args.batch} x {args.seq}, optimizer {args.optimizer}, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, {args.difference} estimator"
          f"{f' ({args.hvp_graph} graphs)' if args.difference == 'hvp' else ''}"
          f"{'' if args.difference == 'hvp' else (', unchecked' if args.no_self_check else ', self-checked')}, "
          f"{args.lens} lens{', L_ul in the perturbed pass' if args.unlearn_pass == 'perturbed' else ''}")
    for name in ("sft", "seam"):
        phase = result[name]
        print(f"  {name.upper():4s} step {phase['step_s']:.4f} s (CPU {phase['cpu_step_s']:.4f} s)  "
              f"{phase['tokens_per_s']:,.0f} tok/s  "
              f"peak {phase['peak_gib']:.3f} GiB")
    print(f"  SEAM / SFT time: {result['time_ratio']:.2f}x, CPU time {result['cpu_time_ratio']:.2f}x   "
          f"(memory: {result['memory_method']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
