"""Lab runtime: machine prerequisites, offline images, Docker engine access."""
