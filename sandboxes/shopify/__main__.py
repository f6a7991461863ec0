import os

import uvicorn

from sandboxes.shopify.app import app_from_env

uvicorn.run(
    app_from_env(),
    host=os.environ.get("SHOPIFY_PRIMA_SHOPIFY_SANDBOX_HOST", "127.0.0.1"),
    port=int(os.environ.get("SHOPIFY_PRIMA_SHOPIFY_SANDBOX_PORT", "8091")),
    log_level="warning",
)
