"""Losses of the SEAM objective, for any Hugging Face causal LM.

Batches are dicts of LongTensors ``input_ids``, ``attention_mask``, ``labels`` of
shape [B, T]; ``labels`` is -100 on prompt and padding tokens, so only the response
(and its EOS) is learned. Losses are 0-dim fp32 tensors: logits are upcast before the
softmax so that bf16 models do not lose the loss in rounding.
"""

from __future__ import annotations

import weakref
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
UnlearnVariant = Literal["bounded_lens", "ascent"]


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over label tokens != -100.

    logits: [B, T, V] any float dtype; labels: [B, T] long. Position t predicts
    labels[t + 1], as in ``model(..., labels=labels).loss``.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="mean",
    )


def kl_rows(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(p_ref || p), in fp32; logits, ref_logits: [N, V] at the scored positions
    (:func:`scored_forward`). Zero, with zero gradient, where the two models agree: an anchor that keeps
    a model's answers *and their confidence* where a reference had them (plain SFT would also sharpen them).
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits.float(), dim=-1)
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1).mean()


def forward(model: nn.Module, batch: dict[str, torch.Tensor], hidden_states: bool = False):
    """Run the model on a batch (no labels passed: the loss is ours)."""
    return model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_hidden_states=hidden_states,
        use_cache=False,
    )


class Scored(NamedTuple):
    """One forward pass with logits only where a loss reads them (:func:`scored_forward`).

    outputs: the model's output (``hidden_states`` if asked; ``logits`` [B, 0, V], none, when the
    head was split off, else the full [B, T, V]); logits: [N, V] in the
    model's dtype at the N positions whose next token is a label, rows in (batch, position) order;
    targets: [N] long, those labels; labels: the batch's [B, T] labels; split: whether the head was split.
    """

    outputs: object
    logits: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor
    split: bool


_HEAD_IS_LAST: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()
"""Per model: does its forward end in ``get_output_embeddings()(final hidden states)``, nothing after?"""


def _run_with_split_head(model: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor],
                         hidden_states: bool, keep: int = 0):
    """Forward with the head fed only the last ``keep`` positions (none: its logits would be discarded,
    and at a 49k vocabulary even [B, 1, H] reads the whole head weight); returns (outputs, final hidden [B, T, H])."""
    captured: list[torch.Tensor] = []

    def last_positions(module, args):
        captured.append(args[0])
        return (args[0][:, args[0].shape[1] - keep:], *args[1:])

    handle = head.register_forward_pre_hook(last_positions)
    try:
        outputs = forward(model, batch, hidden_states)
    finally:
        handle.remove()
    if len(captured) != 1 or captured[0].dim() != 3 or captured[0].shape[:2] != batch["input_ids"].shape:
        raise RuntimeError(f"the output head of {type(model).__name__} ran {len(captured)} times, not once "
                           "on the final hidden states")
    return outputs, captured[0]


def _head_is_last(model: nn.Module, batch: dict[str, torch.Tensor]) -> bool:
    """Probe once per model (eval mode, no grad, one short row): the head split off gives the model's
    own logits bit for bit, and the forward runs with the head handed no position (as the scored
    passes do). False for models that soft-cap or scale logits after the head, or whose
    head is not called once on [B, T, H]; those keep the full-logit path."""
    known = _HEAD_IS_LAST.get(model)
    if known is not None:
        return known
    head = model.get_output_embeddings()
    ok = False
    if head is not None:
        probe = {k: batch[k][:1, :2] for k in ("input_ids", "attention_mask")}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                outputs, hidden = _run_with_split_head(model, head, probe, False, keep=1)
                ok = outputs.logits.shape[1] == 1 and torch.equal(head(hidden[:, -1:]), outputs.logits)
                if ok:  # and the passes themselves hand the head no position: that must run too
                    ok = _run_with_split_head(model, head, probe, False)[0].logits.shape[1] == 0
        except (RuntimeError, TypeError, IndexError, AttributeError):
            ok = False
        finally:
            model.train(was_training)
    _HEAD_IS_LAST[model] = ok
    return ok


SPLIT_HEAD_MIN_VOCAB = 8192
"""Vocabularies from this size up take the split head (:func:`scored_forward`). Below it (the test,
toy and tiny tokenizers, 40-400 words) the head is a small share of the forward, and keeping the
full-logit path keeps the rounding those models' documented runs were measured with; released
LMs' tokenizers have 32k words and more."""


def scored_forward(model: nn.Module, batch: dict[str, torch.Tensor], hidden_states: bool = False,
                   split_head: bool | None = None) -> Scored:
    """One forward pass whose output head runs only at the positions a loss scores.

    A causal LM's head is a large share of its compute at a large vocabulary (SmolLM2: 49k
    words, about a fifth of the forward at 4 x 64 tokens), and the prompt and padding positions
    of a chat batch are never scored. A forward pre-hook on ``get_output_embeddings()`` takes the
    final hidden states [B, T, H] and passes the head no position at all; the head is then
    applied to the N scored rows. Rounding can differ from slicing full [B, T, V] logits (the head's
    weight gradient sums over N rows, not B x T). ``split_head``: None splits from
    ``SPLIT_HEAD_MIN_VOCAB`` words up; models that change logits after the head keep the full path
    either way (``_head_is_last``, probed once per model).
    """
    labels = batch["labels"]
    keep = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][keep]
    if split_head is None:
        head = model.get_output_embeddings()
        split_head = head is not None and head.weight.shape[0] >= SPLIT_HEAD_MIN_VOCAB
    if not split_head or not _head_is_last(model, batch):
        outputs = forward(model, batch, hidden_states)
        return Scored(outputs, outputs.logits[:, :-1][keep], targets, labels, False)
    head = model.get_output_embeddings()
    outputs, hidden = _run_with_split_head(model, head, batch, hidden_states)
    return Scored(outputs, head(hidden[:, :-1][keep]), targets, labels, True)


def scored_loss(scored: Scored) -> torch.Tensor:
    """Mean cross-entropy over the scored rows, fp32 (the value of :func:`response_loss`). Unsplit, it *is*
    ``response_loss`` on the full logits: the same operations, so the same bits as before the split existed."""
    if not scored.split:
        return response_loss(scored.outputs.logits, scored.labels)
    return F.cross_entropy(scored.logits.float(), scored.targets, reduction="mean")


def lm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Causal-LM loss on the response tokens of ``batch`` (the SFT loss), logits formed only there."""
    return scored_loss(scored_forward(model, batch))


def lens_modules(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The final norm and the output head, for the logit lens of any decoder.

    The head is ``get_output_embeddings()``; the final norm is the one normalisation
    module among the direct children of the decoder stack (``model.get_decoder()`` or
    ``model.base_model``): Llama's ``norm``, GPT-2's ``ln_f``, GPT-NeoX's
    ``final_layer_norm``, and so on.
    """
    head = model.get_output_embeddings()
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    norms = [m for _, m in decoder.named_children() if "norm" in type(m).__name__.lower()]
    if head is None or len(norms) != 1:
        raise ValueError(
            f"cannot find a unique final norm and output head in {type(model).__name__} "
            f"(found {len(norms)} norm modules); use seam.unlearn_loss=ascent"
        )
    return norms[0], head


LENS_CHUNK_ROWS = 2048
"""Rows (layer x labelled position) per chunk of the lens cross-entropy: bounds the transient
[rows, vocab] fp32 logits (2048 x 32000 x 4 B = 250 MiB at the Llama-2 vocabulary)."""


class _LensCrossEntropy(torch.autograd.Function):
    """sum over layers l of mean over rows r of CE(z[l, r] @ W.T + b, y[r]), in chunks of rows.

    z: [L, N, H] normalised hidden states at the N labelled positions; W: [V, H]; b: [V]
    or None; y: [N] long. The logits of a chunk are formed in z's dtype and upcast to fp32
    (as ``response_loss`` does); the gradient is computed in the same sweep (softmax - one-hot),
    so no [rows, V] tensor outlives its chunk and nothing is recomputed in backward.
    """

    @staticmethod
    def forward(ctx, z, weight, bias, targets, chunk: int):
        n_layers, n_rows, hidden = z.shape
        flat, rows = z.reshape(n_layers * n_rows, hidden), targets.repeat(n_layers)
        want = torch.is_grad_enabled() or any(ctx.needs_input_grad[:3])
        grad_z = torch.empty_like(flat) if ctx.needs_input_grad[0] else None
        grad_w = (torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
                  if ctx.needs_input_grad[1] else None)
        grad_b = (torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
                  if bias is not None and ctx.needs_input_grad[2] else None)
        total = torch.zeros((), dtype=torch.float32, device=z.device)
        for start in range(0, flat.shape[0], chunk):
            x, y = flat[start:start + chunk], rows[start:start + chunk]
            logits = F.linear(x, weight, bias).float()
            lse = logits.logsumexp(-1)
            total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
            if not want:
                continue
            probs = logits.sub_(lse[:, None]).exp_()
            probs[torch.arange(len(y), device=y.device), y] -= 1.0
            g = probs.div_(n_rows).to(x.dtype)
            if grad_z is not None:
                grad_z[start:start + chunk] = g @ weight
            if grad_w is not None:
                grad_w += (g.t() @ x).float()
            if grad_b is not None:
                grad_b += g.float().sum(0)
        ctx.save_for_backward(*(t for t in (grad_z, grad_w, grad_b) if t is not None))
        ctx.shapes = (z.shape, grad_z is not None, grad_w is not None, grad_b is not None, weight.dtype)
        return total / n_rows

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        shape, has_z, has_w, has_b, w_dtype = ctx.shapes
        saved = list(ctx.saved_tensors)
        gz = saved.pop(0) if has_z else None
        gz = (gz * grad_out.to(gz.dtype)).reshape(shape) if has_z else None
        gw = (saved.pop(0) * grad_out).to(w_dtype) if has_w else None
        gb = (saved.pop(0) * grad_out).to(w_dtype) if has_b else None
        return gz, gw, gb, None, None


def lens_layers(n_layers: int, stride: int = 1) -> list[int]:
    """Indices into ``hidden_states`` (1 = first layer's output) the bounded lens reads:
    every ``stride``-th layer, always including the last (``n_layers``)."""
    return [layer for layer in range(1, n_layers + 1) if layer % stride == 0 or layer == n_layers]


def bounded_lens_loss(model: nn.Module, outputs, labels: torch.Tensor,
                      chunk_rows: int = LENS_CHUNK_ROWS, stride: int = 1,
                      last: torch.Tensor | None = None) -> torch.Tensor:
    """-log(1 + mean over layers l of CE(lm_head(norm(h_l)), labels)).

    ``outputs`` must carry ``hidden_states`` (embeddings, then one entry per layer; the
    last entry is already normalised by the model, so its logits are ``outputs.logits``).
    ``last``: the last layer's cross-entropy if already computed (``adversarial_losses`` passes
    its SFT loss from :func:`scored_forward`); else from ``outputs.logits`` [B, T, V].
    ``stride`` k > 1 reads only every k-th layer and the last (``lens_layers``): the lens
    costs about (layers / k) x 2 x [labelled tokens x hidden x vocab] multiply-adds, which at
    a 49k vocabulary and 30 layers is several times the model's own forward.
    The intermediate layers' lens is evaluated only at the labelled positions, in chunks
    of ``chunk_rows`` rows with the gradient formed in the same sweep (``_LensCrossEntropy``):
    no [B, T, V] logits per layer, no recompute. Heads that are not a plain ``nn.Linear``
    fall back to a checkpointed full-position lens. Bounded below by -log(1 + max CE), so
    ascent cannot diverge.
    """
    final_norm, head = lens_modules(model)
    n_layers = len(outputs.hidden_states) - 1
    inner = [outputs.hidden_states[i] for i in lens_layers(n_layers, stride)[:-1]]
    if last is None:
        last = response_loss(outputs.logits, labels)
    if not inner:
        return -torch.log1p(last)
    if type(head) is nn.Linear:
        keep = labels[:, 1:] != IGNORE_INDEX
        z = final_norm(torch.stack([h[:, :-1][keep] for h in inner]))
        lens_sum = _LensCrossEntropy.apply(z, head.weight, head.bias, labels[:, 1:][keep], chunk_rows)
    else:
        def lens_ce(hidden: torch.Tensor) -> torch.Tensor:
            return response_loss(head(final_norm(hidden)), labels)

        lens_sum = sum(checkpoint(lens_ce, h, use_reentrant=False) for h in inner)
    return -torch.log1p((lens_sum + last) / (len(inner) + 1))


def bounded_lens_loss_full(model: nn.Module, outputs, labels: torch.Tensor, stride: int = 1,
                           last: torch.Tensor | None = None) -> torch.Tensor:
    """The lens at every position, one checkpointed [B, T, V] logits per layer (the pre-chunking
    implementation, kept as the reference the tests and benchmarks compare against). ``last`` as in
    :func:`bounded_lens_loss`."""
    final_norm, head = lens_modules(model)

    def lens_ce(hidden: torch.Tensor) -> torch.Tensor:
        return response_loss(head(final_norm(hidden)), labels)

    n_layers = len(outputs.hidden_states) - 1
    per_layer = [checkpoint(lens_ce, outputs.hidden_states[i], use_reentrant=False)
                 for i in lens_layers(n_layers, stride)[:-1]]
    per_layer.append(response_loss(outputs.logits, labels) if last is None else last)
    return -torch.log1p(torch.stack(per_layer).mean())


def adversarial_losses(
    model: nn.Module, batch: dict[str, torch.Tensor], variant: UnlearnVariant, lens_stride: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(SFT loss on D_adv, L_ul) from one forward pass over the adversarial batch.

    ``ascent``: L_ul = -SFT loss. ``bounded_lens``: the multi-layer logit-lens loss over
    every ``lens_stride``-th layer and the last.
    """
    scored = scored_forward(model, batch, hidden_states=variant == "bounded_lens")
    sft = scored_loss(scored)
    if variant == "ascent":
        return sft, -sft
    if variant == "bounded_lens":
        # unsplit, the lens forms its own last-layer term from the full logits, as it always did (same bits)
        last = sft if scored.split else None
        return sft, bounded_lens_loss(model, scored.outputs, batch["labels"], stride=lens_stride, last=last)
    raise ValueError(f"unknown unlearning variant {variant!r}")
