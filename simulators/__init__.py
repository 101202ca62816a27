"""Virtual patients and replay of recorded streams."""
