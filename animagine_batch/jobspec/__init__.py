"""The job spec: a job file's settings as typed, frozen, validated data, and everything that can
be worked out from them without a model: the tag vocabulary, prompt building, prompt sets and
wildcards, the emphasis parser, the samplers and axes tables, sweep expansion and units.

Pure: the standard library, PyYAML and dynamicprompts (plus the header and repo-id checks of
safetensors and huggingface_hub); never torch, ray, Hydra or pyarrow.
"""
