"""libvips pipelines: decoding, focal points, transform steps and output formats."""
