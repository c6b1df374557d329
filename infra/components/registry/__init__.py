"""Container registries per cloud: where model images live, referenced by digest."""
