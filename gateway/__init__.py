"""The REST gateway of the ML mesh: auth, quotas, webhooks, over the services' gRPC APIs."""

from gateway.main import create_app
from gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
