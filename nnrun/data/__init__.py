"""Data: datasets (tables and images) built from a config, split, preprocessed on train, batched on the device.

Layers, lowest first: `tables`, `image_files`, `splits`, `batching` and `preprocessing`; then `csv_table`,
`streaming` and `images`; then `datasets` (the registry) and `bundle` (config -> split tensors on the device).
Nothing in `nnrun.data` imports from the modules above it (`nnrun.config`, `nnrun.training`, ...).
"""
