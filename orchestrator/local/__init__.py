"""Local stand-ins for the three clouds: object-store emulators, OCI registries, kind clusters.

Each kind of stand-in is one ``StandIn`` (see ``base.py``) registered in ``STAND_INS``.
``mco local up [KIND]`` starts them and writes what they listen on into
``mco.local.yaml``, so the rest of mco sees them as ordinary cloud configuration.
"""
