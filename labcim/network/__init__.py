"""Neural networks on the chip: model, loaders, placement, execution, drift, hybrid, tuning."""
