"""Kubernetes: render manifests (``render``), apply them server-side (``client``), watch rollouts (``rollout``)."""
