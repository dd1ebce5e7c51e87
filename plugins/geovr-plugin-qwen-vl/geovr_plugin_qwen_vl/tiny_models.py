"""Random-init Qwen2.5-VL / Qwen3-VL models built offline (no download, CPU, a few seconds).

They back the ``pretrained = "geovr-tiny"`` / ``"geovr-tiny-<size>"`` ids of the backbone (smoke runs,
the CPU demo and ablation recipes: see :func:`geovr_plugin_qwen_vl.loading.materialize_tiny`) and the
plugin's test helpers (:mod:`geovr_plugin_qwen_vl.testing`). A checkpoint directory is written with
``save_pretrained`` (model + processor) and loaded back through the backbone's ``pretrained=<dir>``
option, exactly as a hub checkpoint would be.

* :data:`SIZES` — the sizes (``tiny``: 2 layers, hidden 32; ``small``: 4 layers, hidden 128);
* :func:`tiny_model_config` — the model config of a size (vision depth 1 or 2, vocab ~270 or 1024);
* :func:`tiny_tokenizer` — an offline byte-level tokenizer (built with ``tokenizers``) holding the
  chat-format and vision special tokens and a ChatML chat template; :func:`trained_tokenizer` — the same
  with BPE merges learned from the synthetic world's questions;
* :func:`tiny_processor` — the model's processor around that tokenizer (no resizing budget surprises:
  the backbone resizes frames itself);
* :func:`tiny_model` — the random-init ``*ForConditionalGeneration``;
* :func:`save_tiny_checkpoint` — write model + processor into a directory and return its path.

In a recipe, ``[backbone] component = "qwen3_vl"`` with ``pretrained = "geovr-tiny"`` (or the directory
returned by :func:`save_tiny_checkpoint`).
"""

from __future__ import annotations

import os
from typing import Literal

KINDS = ("qwen2_5_vl", "qwen3_vl")

#: Special tokens of the Qwen chat/vision format, in id order after the 256 byte tokens.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: ChatML template with the Qwen-VL vision placeholders (``<|vision_start|><|video_pad|><|vision_end|>``).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'video' -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; expected one of {KINDS}")


def _chat_tokenizer(tok):
    """``tokenizers.Tokenizer`` → a ChatML ``PreTrainedTokenizerFast`` with :data:`SPECIAL_TOKENS`."""
    from transformers import PreTrainedTokenizerFast

    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        padding_side="right",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_tokenizer():
    """Byte-level BPE tokenizer without merges (256 byte tokens + :data:`SPECIAL_TOKENS`), built
    offline with ``tokenizers`` and wrapped as a transformers fast tokenizer with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return _chat_tokenizer(tok)


def _question_corpus(scenes: int = 300) -> list[str]:
    """Texts a student of the synthetic world reads and writes: the system prompt, both evaluation
    protocols' prompts around VSI-style questions of ``scenes`` synthetic scenes, and their answers."""
    from geovr.data.synthetic.qa import generate_questions
    from geovr.data.synthetic.scene import generate_scene
    from geovr.eval.prompts import build_prompt

    texts = [
        "You are a helpful assistant.",
        "system\n",
        "user\n",
        "assistant\n",
        "In which order do these categories first appear in the video: chair, bed, tv, sofa?",
    ]
    for i in range(scenes):
        for rec in generate_questions(generate_scene(10_000 + i), seed=i):
            for protocol in ("lmms-eval", "geovr"):
                texts.append(build_prompt(rec["question"], rec["options"], protocol=protocol))
            texts.append(rec["ground_truth"])
    return texts


def trained_tokenizer(vocab_size: int = 1024):
    """Like :func:`tiny_tokenizer` but with BPE merges learned (deterministically, offline, ~1 s) from
    :func:`_question_corpus`: prompts are ~4× shorter than byte-level, so a small student trains ~4×
    faster. Digits stay single tokens (numbers are spelled digit by digit)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_question_corpus(), trainer)
    return _chat_tokenizer(tok)


def _token_ids(tokenizer) -> dict[str, int]:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


#: Sizes of the random-init models (``pretrained = "geovr-tiny"`` or ``"geovr-tiny-<size>"``):
#: LLM hidden/layers/heads and vision hidden/depth. ``tiny`` exercises code paths; ``small`` is big
#: enough to learn the synthetic world's questions on a CPU in minutes.
SIZES = {
    "tiny": {
        "hidden": 32,
        "layers": 2,
        "heads": 4,
        "kv_heads": 2,
        "vision_hidden": 32,
        "vision_depth": None,
        "bpe": False,
    },
    "small": {
        "hidden": 128,
        "layers": 4,
        "heads": 4,
        "kv_heads": 2,
        "vision_hidden": 64,
        "vision_depth": 2,
        "bpe": True,
    },
}


def tiny_model_config(kind: Literal["qwen2_5_vl", "qwen3_vl"], tokenizer=None, size: str = "tiny"):
    """A random-init-sized config (``size`` from :data:`SIZES`). ``tiny``: 2 LLM layers, hidden 32 (4
    heads of 8, M-RoPE sections [2,1,1]), vision depth 1 (Qwen2.5-VL, patch 14) or 2 (Qwen3-VL, patch
    16, deepstack after vision block 0); ``small``: 4 layers, hidden 128 (4 heads of 32), vision hidden 64,
    with the BPE vocabulary of :func:`trained_tokenizer`."""
    _check_kind(kind)
    if size not in SIZES:
        raise ValueError(f"unknown tiny model size {size!r}; expected one of {sorted(SIZES)}")
    z = SIZES[size]
    tokenizer = tokenizer or tiny_tokenizer()
    vocab = len(tokenizer)
    ids = _token_ids(tokenizer)
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    D, head = z["hidden"], z["hidden"] // z["heads"]
    section = [head // 4, head // 8, head // 8]  # M-RoPE (t, h, w) halves of the rotary dims
    text = dict(
        vocab_size=vocab,
        hidden_size=D,
        intermediate_size=2 * D,
        num_hidden_layers=z["layers"],
        num_attention_heads=z["heads"],
        num_key_value_heads=z["kv_heads"],
        max_position_embeddings=4096,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=None,
    )
    V = z["vision_hidden"]
    if kind == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}
        vision = dict(
            depth=z["vision_depth"] or 1,
            hidden_size=V,
            intermediate_size=2 * V,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=D,
            tokens_per_second=2,
            window_size=56,
            fullatt_block_indexes=[0],
        )
        cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    else:
        from transformers import Qwen3VLConfig

        text.update(
            head_dim=head,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": section,
                "mrope_interleaved": True,
            },
        )
        vision = dict(
            depth=z["vision_depth"] or 2,
            hidden_size=V,
            intermediate_size=2 * V,
            num_heads=2,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=D,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0],
        )
        cfg = Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
    cfg.eos_token_id = eos
    cfg.pad_token_id = pad
    return cfg


def tiny_processor(kind: Literal["qwen2_5_vl", "qwen3_vl"], tokenizer=None):
    """The model family's processor (image + video processor + :func:`tiny_tokenizer`)."""
    _check_kind(kind)
    tokenizer = tokenizer or tiny_tokenizer()
    size = {"shortest_edge": 32 * 32, "longest_edge": 512 * 512}
    if kind == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        kw = dict(patch_size=14, merge_size=2, temporal_patch_size=2, size=size)
        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(**kw),
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(**kw),
            chat_template=CHAT_TEMPLATE,
        )
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    kw = dict(patch_size=16, merge_size=2, temporal_patch_size=2, size=size)
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**kw),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(**kw),
        chat_template=CHAT_TEMPLATE,
    )


def tiny_model(kind: Literal["qwen2_5_vl", "qwen3_vl"], *, seed: int = 0, tokenizer=None, size: str = "tiny"):
    """A random-init ``*ForConditionalGeneration`` with :func:`tiny_model_config` (float32, eval mode).
    The weights come from ``seed`` alone, drawn on a forked RNG: the caller's global RNG state is left as
    it was (building the model on a cache miss must not change what a run draws next)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    cfg = tiny_model_config(kind, tokenizer, size)
    cls = Qwen2_5_VLForConditionalGeneration if kind == "qwen2_5_vl" else Qwen3VLForConditionalGeneration
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(cfg).eval()


def save_tiny_checkpoint(
    kind: Literal["qwen2_5_vl", "qwen3_vl"], path: str | os.PathLike, *, seed: int = 0, size: str = "tiny"
) -> str:
    """Write a tiny random-init model (``size`` from :data:`SIZES`) and its processor to ``path`` with
    ``save_pretrained``; return ``str(path)``, usable as the backbone option ``pretrained``."""
    tokenizer = trained_tokenizer() if SIZES[size]["bpe"] else tiny_tokenizer()
    model = tiny_model(kind, seed=seed, tokenizer=tokenizer, size=size)
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tiny_processor(kind, tokenizer).save_pretrained(path)
    return str(path)
