"""The web feature browser served at /ui by the cliplens app."""
