"""Training losses: adversarial, R1, reconstruction, LPIPS, matching-aware, CLIP."""
