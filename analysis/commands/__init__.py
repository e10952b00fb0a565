"""The analysis subcommands, one module per area: tables (table, compare, regress), control,
images (grid, report, gallery) and people (rate, agreement, the human rows of compare). Each
starts from `analysis.context.load_context`."""
