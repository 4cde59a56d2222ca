"""Data: datasets (tables and images) built from a config, split, preprocessed on train, batched on the device.

Layers, lowest first: `tables`, `image_files`, `splits`, `batching` and `preprocessing`; then `csv_table` and
`streaming`; then `images` (which lists streamed folders); then `datasets` (the registry) and `bundle` (data
config -> split tensors on the device).
Nothing in `nnrun.data` imports from the modules above it (`nnrun.config`, `nnrun.training`, ...).
"""
