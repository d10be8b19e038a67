"""ComponentResources of the labeling platform, one per concern."""
