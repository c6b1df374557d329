"""Tools shared by tests, drills and benchmarks; never used to serve or deploy.

    traffic.py        the open-loop load generator: ``TrafficGenerator`` (start/stop in a
                      background thread, for drills) and ``run_load`` (a fixed rate for a fixed
                      time, with faults at set offsets, for tests and benchmarks); one request
                      body, ``predict_body``
    faults.py         ``FaultProxy``: a fault-injecting proxy in front of a real model server
    model_server.py   ``ModelServerProcess``: ``mco serve`` in a child process that can be
                      killed -9 and started again on the same port
    state_worker.py   ``python -m orchestrator.testing.state_worker``: a process that takes
                      the objectstore deploy lease and appends to the history (held, raced,
                      killed, paused by the state tests and the state benchmark)
"""
