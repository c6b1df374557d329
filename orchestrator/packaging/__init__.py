"""Turn a model bundle into a container image that runs the model server.

    wheelhouse.py   wheels built on the host (the image build has no network)
    dockerfile.py   the generated Dockerfile (a pure function of a few settings)
    engine.py       the Docker engine connection, with a clear error when there is none
    build.py        ``build_image``: stage the context, build with progress, report size and time
    publish.py      push one image to every configured registry in parallel
    startup.py      the image's entrypoint: fetch the model if asked, then serve it
    healthcheck.py  the image's HEALTHCHECK (stdlib only: it runs every few seconds)

This module imports nothing heavy: the image's healthcheck imports it.
"""
