"""A tiny random LLaVA-OneVision checkpoint for tests (no network, about a second on CPU).

:func:`save_tiny_checkpoint` writes a directory that loads through the same ``pretrained=<dir>``
path as a real checkpoint: a random-init ``LlavaOnevisionForConditionalGeneration`` (SigLIP vision
tower: 1 layer, hidden 32, 40-px images, 8-px patches → 5×5 patches pooled to a 3×3 grid per frame;
Qwen2 LLM: 2 layers, hidden 32) and a processor whose tokenizer is built offline with ``tokenizers``
(byte-level, one token per byte, plus the chat and vision special tokens) and a Qwen-style chat
template. :func:`tiny_backbone` builds the backbone on it; :func:`tiny_batch` makes a matching batch.
"""

from __future__ import annotations

import os

#: Qwen-style chat template understanding HF structured content (text / image / video parts).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<video>\n{% elif part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
IMAGE_SIZE, PATCH_SIZE = 40, 8
#: pooled visual grid of one frame of the tiny model
GRID = (3, 3)
PINPOINTS = [[40, 40], [40, 80], [80, 40], [80, 80]]


def tiny_tokenizer():
    """Byte-level tokenizer (ids 0..255 = bytes) + :data:`SPECIAL_TOKENS` (ids 256..260)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )


def tiny_processor():
    """``LlavaOnevisionProcessor`` for the tiny model (40×40 frames, 25 patches per image)."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=PINPOINTS),
        tokenizer=tiny_tokenizer(),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )


def tiny_model(tokenizer, seed: int = 0):
    """Random-init tiny ``LlavaOnevisionForConditionalGeneration`` matching ``tokenizer``'s ids."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer) + 3,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=PINPOINTS,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    with torch.random.fork_rng(devices=[]):  # weights from `seed` alone; the caller's RNG state is kept
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_tiny_checkpoint(path: str, seed: int = 0) -> str:
    """Write the tiny model + processor to ``path`` with ``save_pretrained``; returns ``path``."""
    os.makedirs(path, exist_ok=True)
    processor = tiny_processor()
    tiny_model(processor.tokenizer, seed=seed).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def tiny_backbone(path: str | None = None, **options):
    """The ``llava_onevision`` backbone built on the tiny checkpoint (written to ``path``, or to a new
    temporary directory); ``options`` are recipe options (defaults: float32, vision frozen)."""
    import tempfile

    from geovr.protocols import BuildContext
    from geovr_plugin_llava.backbone import build
    from geovr_plugin_llava.config import LlavaOneVisionConfig

    path = path or save_tiny_checkpoint(tempfile.mkdtemp(prefix="tiny_llava_"))
    options = {"pretrained": path, "dtype": "float32", "freeze": ["vision"], **options}
    return build(LlavaOneVisionConfig(**options), BuildContext())


def tiny_batch(batch_size: int = 2, num_frames: int = 2, size: tuple[int, int] = (48, 56), seed: int = 0):
    """A :class:`geovr.protocols.Batch` of random frames ``[B,S,3,H,W]`` with short QA pairs (the
    first sample multiple choice, the others numerical)."""
    import torch

    from geovr.protocols import Batch

    g = torch.Generator().manual_seed(seed)
    B = batch_size
    return Batch(
        frames=torch.rand(B, num_frames, 3, *size, generator=g),
        sample_ids=[f"s{i}" for i in range(B)],
        questions=[
            "Which object is closest?" if i == 0 else f"How many chairs are there{'?' * (i + 1)}" for i in range(B)
        ],
        answers=["B" if i == 0 else str(i + 2) for i in range(B)],
        options=[["A. chair", "B. table", "C. lamp"] if i == 0 else None for i in range(B)],
        question_types=["object_rel_distance" if i == 0 else "object_counting" for i in range(B)],
        scene_ids=[f"scene{i}" for i in range(B)],
        frame_indices=torch.arange(num_frames).expand(B, num_frames).clone(),
    )
