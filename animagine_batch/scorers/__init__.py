"""Image scorers: one module per scorer, registered by name in `registry`."""
