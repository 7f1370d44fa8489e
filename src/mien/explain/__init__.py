"""Why the model decided: occlusion heatmaps, facial-region shares, plain-language rationales."""
