"""Evaluation metrics (PSNR, SSIM, LPIPS) and the eval loop."""
