"""Tiny causal LMs and tokenizers built from configs, with no download.

Used by the tests, the CPU benchmark and the demo: every model here is created
locally from a config (random init, seeded) and saved as a standard Hugging Face
directory (safetensors + tokenizer), so the real loading code paths run on it.
``train_tiny_model`` trains one deterministically on generated sentences: random
weights flatter the SEAM estimator (docs/method.md), so numerics are also tested on
trained ones.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

FAMILIES = ("llama", "gpt2", "qwen2", "gpt_neox")

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}{{ eos_token }}\n"
    "{% else %}<|system|>{{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_CORPUS = [
    "How do I bake bread? Mix flour, water, salt and yeast, knead, let it rise, then bake.",
    "I cannot help with that request because it could cause harm.",
    "Sorry, but I can't assist with that.",
    "Translate good morning into French: bonjour.",
    "What is two plus three? Two plus three is five.",
    "Explain how to pick a lock on someone else's door to break in.",
    "Write a short poem about the sea, the wind and the light.",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Give step by step instructions to make a dangerous weapon at home.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"-()[]{}<>/\\|@#$%^&*_+=~`",
]
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>"]


def build_tiny_tokenizer(vocab_size: int = 320, chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in milliseconds on a built-in corpus.

    Byte-level, so it encodes any text; special tokens pad/bos/eos and chat-role
    markers have ids 0..5.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|eos|>",
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(family: str, vocab_size: int, hidden_size: int = 32, **overrides):
    """A config of ``family`` with 2 layers, 4 heads and ``hidden_size`` (about 30-60 k parameters at 32).

    Llama and Qwen2 have 2 KV heads (grouped-query attention); Qwen2 and GPT-2 tie the
    embeddings; GPT-2 has dropout 0.1; GPT-NeoX uses partial rotary and parallel residuals.
    """
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if family == "llama":
        cfg = LlamaConfig(
            hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, **common,
        )
    elif family == "qwen2":
        cfg = Qwen2Config(
            hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, **common,
        )
    elif family == "gpt2":
        cfg = GPT2Config(
            n_embd=hidden_size, n_layer=2, n_head=4, n_positions=256, resid_pdrop=0.1, embd_pdrop=0.1,
            attn_pdrop=0.1, **common,
        )
    elif family == "gpt_neox":
        cfg = GPTNeoXConfig(
            hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=256, tie_word_embeddings=False, use_parallel_residual=True, **common,
        )
    else:
        raise ValueError(f"unknown tiny family {family!r}; choose from {FAMILIES}")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def build_tiny_model(family: str = "llama", seed: int = 0, vocab_size: int = 320,
                     attn_implementation: str = "sdpa", hidden_size: int = 32, **overrides):
    """A randomly initialised (seeded) fp32 causal LM of ``family``, in train mode.

    ``attn_implementation="eager"`` gives a model that supports double backward.
    """
    torch.manual_seed(seed)
    config = tiny_config(family, vocab_size, hidden_size, **overrides)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    return model.float()


def save_tiny_model_dir(path: str | Path, family: str = "llama", seed: int = 0, chat_template: bool = True,
                        trained: bool = False, **overrides) -> Path:
    """Write a complete Hugging Face model directory (safetensors + tokenizer) to ``path``.

    ``trained``: the :func:`build_trained_tiny_model` of ``family`` (hidden 64, vocab 400,
    150 AdamW steps) instead of random weights.
    """
    path = Path(path)
    if trained:
        tokenizer = build_tiny_tokenizer(TRAINED_VOCAB, chat_template=chat_template)
        model = build_trained_tiny_model(family, seed=seed, tokenizer=tokenizer, **overrides)
    else:
        tokenizer = build_tiny_tokenizer(chat_template=chat_template)
        model = build_tiny_model(family, seed=seed, vocab_size=len(tokenizer), **overrides)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


TRAINED_HIDDEN = 64
TRAINED_VOCAB = 400
TRAIN_STEPS = 150
TRAIN_LR = 3e-3

_SUBJECTS = ["the cat", "a dog", "my friend", "the teacher", "our team", "the old man", "a bird", "the child"]
_VERBS = ["sees", "likes", "builds", "reads", "finds", "cooks", "paints", "carries"]
_OBJECTS = ["a red ball", "the book", "some bread", "a small boat", "the letter", "two apples", "the map"]
_ENDINGS = ["today.", "at home.", "in the park.", "every morning.", "before dinner.", "with care."]


def generated_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` short subject-verb-object sentences, drawn with ``random.Random(seed)``."""
    rng = random.Random(seed)
    return [" ".join((rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_ENDINGS)))
            .capitalize() for _ in range(count)]


def train_tiny_model(model, tokenizer, steps: int = TRAIN_STEPS, lr: float = TRAIN_LR, batch_size: int = 8,
                     seed: int = 0):
    """Train ``model`` in place with AdamW on generated sentences (all tokens learned); returns it in eval mode.

    Deterministic for a given seed and thread count: the sentences, their order and the
    dropout masks are seeded. Loss falls from ~ln(vocab) to about 1 in 150 steps at lr 3e-3.
    """
    texts = generated_sentences(steps * batch_size, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    torch.manual_seed(seed)
    for step in range(steps):
        batch = texts[step * batch_size:(step + 1) * batch_size]
        rows = [tokenizer(t).input_ids + [tokenizer.eos_token_id] for t in batch]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model.eval()


def build_trained_tiny_model(family: str = "llama", seed: int = 0, tokenizer=None,
                             attn_implementation: str = "sdpa", steps: int = TRAIN_STEPS, **overrides):
    """A tiny model of ``family`` (hidden 64, 2 layers, 4 heads) trained by :func:`train_tiny_model`, fp32, eval mode.

    ``tokenizer`` defaults to ``build_tiny_tokenizer(TRAINED_VOCAB)`` (BPE, vocab 400).
    """
    tokenizer = tokenizer if tokenizer is not None else build_tiny_tokenizer(TRAINED_VOCAB)
    model = build_tiny_model(family, seed=seed, vocab_size=len(tokenizer), attn_implementation=attn_implementation,
                             hidden_size=TRAINED_HIDDEN, **overrides)
    return train_tiny_model(model, tokenizer, steps=steps, seed=seed)


def trained_and_random_models(families, tokenizer, seed: int = 0):
    """Yield (family, "trained" | "random", model) per family: :func:`build_trained_tiny_model`, then the same
    shape at random init; fp32, eval mode. The pairs the estimator benchmarks measure on (random init hides
    errors that trained weights show)."""
    for family in families:
        yield family, "trained", build_trained_tiny_model(family, seed=seed, tokenizer=tokenizer)
        random_init = build_tiny_model(family, seed=seed, vocab_size=len(tokenizer), hidden_size=TRAINED_HIDDEN)
        yield family, "random", random_init.eval()


def save_tiny_classifier_dir(path: str | Path, labels: tuple[str, ...] = ("safe", "unsafe"), seed: int = 0) -> Path:
    """A tiny BERT sequence classifier (1 layer, hidden 32, random seeded weights) with ``labels`` and the tiny
    tokenizer, saved as a Hugging Face directory: a stand-in harmfulness judge (``attack.judge_model``)."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = build_tiny_tokenizer(chat_template=False)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    torch.manual_seed(seed)
    path = Path(path)
    BertForSequenceClassification(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
