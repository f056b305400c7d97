"""The `cryptiq` command line: the composition root that reads settings and wires packages."""
