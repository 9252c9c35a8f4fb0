"""Content keys, single-flight, the memory tier and the object stores."""
