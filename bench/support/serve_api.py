"""The API (``app.api:api``) under uvicorn, for bench/chat_load.py: the business plan's limits
raised first (bench.support.harness.raise_plan_limits), no access log. Loopback only.

    python -m bench.support.serve_api --port 8799
"""

from __future__ import annotations

import argparse

from bench.support.harness import raise_plan_limits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    raise_plan_limits()
    import uvicorn

    from app.api import api

    uvicorn.run(
        api, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, timeout_keep_alive=120
    )  # phases pause; a closed keep-alive is a client error


if __name__ == "__main__":
    main()
