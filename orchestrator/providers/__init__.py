"""Cloud providers: thin adapters behind small interfaces (artifact store, container registry, ...).

Only modules in this package import a cloud SDK, and only inside the function that needs it.
"""
