"""Live metrics of a model on real traffic: the names analysis rules may use, drift (PSI)
against the card's holdout predictions, and the gate's metrics on labelled feedback.

Pure computations: the router keeps the predictions and the labels (``router/feedback.py``)
and calls these beside its hot path; the waves strategy judges their results with the
gate's rule syntax (``rules.py``).
"""
