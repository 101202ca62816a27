"""Gateway-side pieces: device adapters and store-and-forward."""
