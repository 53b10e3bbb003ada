"""Build a tiny, random-weights BLIP captioning checkpoint on disk (no download).

The checkpoint has the layout of a real one (``config.json``, safetensors
weights, processor and tokenizer files written by ``save_pretrained``), so the
backend loads it through exactly the code path it uses for a model id. The
special tokens get a strongly negative output bias, so generation never stops
early and always runs to ``max_new_tokens`` with ordinary words: that makes the
``max_length`` bound observable.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

WORDS = (
    "a", "dog", "cat", "on", "the", "grass", "red", "blue", "sitting", "picture",
    "of", "with", "and", "small", "house", "tree", "near", "road", "sky", "water",
)  # fmt: skip
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")


def build_tiny_blip(dest: Path, *, seed: int = 0) -> Path:
    """Write the tiny checkpoint into ``dest`` and return it."""
    torch: Any = importlib.import_module("torch")
    transformers: Any = importlib.import_module("transformers")
    dest.mkdir(parents=True, exist_ok=True)
    vocab = [*SPECIAL, *WORDS]
    vocab_file = dest / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(vocab_file), bos_token="[DEC]")
    image_processor = transformers.BlipImageProcessor(size={"height": 32, "width": 32})
    processor = transformers.BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    ids = {token: vocab.index(token) for token in SPECIAL}
    config = transformers.BlipConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "encoder_hidden_size": 32,
            "max_position_embeddings": 64,
            "bos_token_id": ids["[DEC]"],
            "eos_token_id": ids["[SEP]"],
            "sep_token_id": ids["[SEP]"],
            "pad_token_id": ids["[PAD]"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = transformers.BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        bias = model.text_decoder.cls.predictions.bias
        for token_id in ids.values():
            bias[token_id] = -30.0
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest
