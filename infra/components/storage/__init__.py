"""Artifact storage per cloud: where model bundles live, by digest."""
