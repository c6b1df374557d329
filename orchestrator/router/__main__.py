"""``python -m orchestrator.router --config FILE``: run the router from an mco.yaml.

The admin token comes from the environment (``$MCO_ROUTER_TOKEN``) or the config's
``router.token_file``; it is never passed on the command line, where ``ps`` shows it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from orchestrator.config import load_config
    from orchestrator.errors import MCOError
    from orchestrator.router.server import serve
    from orchestrator.router.settings import read_token, router_config_with_targets
    from orchestrator.router.workers import WorkerInfo, supervise

    parser = argparse.ArgumentParser(prog="python -m orchestrator.router")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=None, help="processes on one port (default router.workers)")
    args = parser.parse_args(argv)
    try:
        mco = load_config(args.config, required=True)
        cfg = router_config_with_targets(mco)
        worker = WorkerInfo.from_env()
        if worker is not None:  # one of a supervisor's workers: the port it shares with its peers
            cfg = cfg.model_copy(update={"port": worker.public_port})
        else:
            workers = args.workers or cfg.workers
            if cfg.dataplane == "rust":
                from orchestrator.router.rust import check_supported

                check_supported(cfg.model_copy(update={"workers": workers}))
            if workers > 1:
                sys.exit(supervise(args.config, workers=workers, host=cfg.host, port=cfg.port))
        token = read_token(cfg, base=args.config.parent)
        serve(cfg, token=token, config_path=args.config)
    except MCOError as exc:
        print(f"mco router: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
