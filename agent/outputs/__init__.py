"""Per-frame outputs of the runner: JSON lines and annotated video."""
