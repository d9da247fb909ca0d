"""journeys-client: a typed client for the journeys API and the MedChat Journeys API it is
wire-compatible with. `Client` (sync) and `AsyncClient` (async), the models they return, the
errors they raise, search filters (`journeys_client.filters`) and `verify_signature` for webhooks."""

from journeys_client._core import RetryPolicy
from journeys_client.aio import AsyncClient
from journeys_client.client import Client
from journeys_client.errors import (
    BadRequest,
    BulkInterrupted,
    Conflict,
    Forbidden,
    JourneysError,
    NotAvailable,
    NotFound,
    RateLimited,
    ServerError,
    TooLarge,
    Unauthorized,
)
from journeys_client.models import (
    CancelResult,
    Delivery,
    Event,
    Flow,
    Instance,
    InstanceDetail,
    Journey,
    NewInstance,
    OptOut,
    Reply,
    ReplyResult,
    TriggerResult,
    Webhook,
)
from journeys_client.webhooks import verify_signature

__all__ = [
    "AsyncClient",
    "BadRequest",
    "BulkInterrupted",
    "CancelResult",
    "Client",
    "Conflict",
    "Delivery",
    "Event",
    "Flow",
    "Forbidden",
    "Instance",
    "InstanceDetail",
    "Journey",
    "JourneysError",
    "NewInstance",
    "NotAvailable",
    "NotFound",
    "OptOut",
    "RateLimited",
    "Reply",
    "ReplyResult",
    "RetryPolicy",
    "ServerError",
    "TooLarge",
    "TriggerResult",
    "Unauthorized",
    "Webhook",
    "verify_signature",
]
