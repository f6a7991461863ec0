"""python -m sandboxes.prima: the Prima sandbox on SHOPIFY_PRIMA_PRIMA_SANDBOX_HOST:PORT."""

import os

import uvicorn

from .app import create_app


def main() -> None:
    env = os.environ.get
    app = create_app(
        env("SHOPIFY_PRIMA_DATABASE_URL", "postgresql://shopify_prima:shopify_prima@127.0.0.1:55432/shopify_prima"),
        env("SHOPIFY_PRIMA_PRIMA_API_KEY", "sandbox-key"),
    )
    uvicorn.run(app, host=env("SHOPIFY_PRIMA_PRIMA_SANDBOX_HOST", "127.0.0.1"),
                port=int(env("SHOPIFY_PRIMA_PRIMA_SANDBOX_PORT", "8090")), log_level="warning")


if __name__ == "__main__":
    main()
