"""``python -m tests.stripe_emulator --host 127.0.0.1 --port 12111``"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from .server import EmulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A stateful Stripe API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument(
        "--public-url",
        default=None,
        help="base URL for hosted_invoice_url (default: http://<host>:<port>)",
    )
    args = parser.parse_args(argv)
    server = EmulatorServer(args.host, args.port, public_url=args.public_url)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"stripe emulator listening on {server.base_url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
