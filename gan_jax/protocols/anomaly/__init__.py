"""One-class anomaly detection by reconstruction: AE, VAE and adversarially trained AE scorers."""
