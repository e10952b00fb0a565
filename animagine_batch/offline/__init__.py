"""Builders of what the project makes offline instead of downloading: the embedded tiny and
random-weight SDXL models (`models.py`, from the component configs in `configs/`), CLIP
tokenizer files (`tokenizers.py`) and the tiny LoRA (`lora.py`). The stand-ins of the scorer
models are built by their scorers' own modules (`scorers/`)."""

from __future__ import annotations

from .lora import ensure_lora
from .models import EMBEDDED, build_pipeline, ensure_model, model_dir
from .tokenizers import make_tokenizer, tokenizer_dir

__all__ = ["EMBEDDED", "build_pipeline", "ensure_lora", "ensure_model", "make_tokenizer",
           "model_dir", "tokenizer_dir"]
