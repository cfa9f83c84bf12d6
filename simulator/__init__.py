"""The platform simulator: a world of players with latent traits, its history, ground truth and forward mode."""
