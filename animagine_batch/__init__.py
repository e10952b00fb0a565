"""animagine-batch: declarative, reproducible generation experiments with Animagine XL 3.1."""

__version__ = "0.1.0"

import logging

# With torchao installed (the fp8 extra) diffusers imports it with every pipeline class, and two
# import-time notices reach stderr that concern neither this package's models nor its results:
# diffusers 0.42 misses torchao 0.18's removed NF4/uintx classes (it registers them only for
# loading torchao-serialised checkpoints), and torch 2.14 calls torchao's pytree registration of
# enums deprecated. Those two loggers are raised to ERROR; nothing else is touched.
for _name in ("diffusers.quantizers.torchao.torchao_quantizer", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)
