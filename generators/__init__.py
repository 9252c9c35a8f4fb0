"""Image generators, the chain that tries them in order, and the work done on prompts."""
