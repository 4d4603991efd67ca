"""Desk-phone provisioning: configuration files by MAC over HTTP, never to a bare MAC.

``templates`` renders Yealink and Polycom files (pure); ``service.ProvisioningService`` checks each
request (per-device credentials, allowed networks, failures rate-limited per source) and is served by the
admin API's app under ``/prov/``.
"""

from engine.provisioning.service import FailureLimiter, ProvisioningService

__all__ = ["FailureLimiter", "ProvisioningService"]
