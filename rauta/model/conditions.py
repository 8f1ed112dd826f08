"""The one catalog of Gateway API condition types and reasons rauta writes.

Role: every condition the model emits is built from the names here, spelled exactly as the
Gateway API v1 spec spells them (``apis/v1/*_types.go``).

Rules:
- No other module spells a condition type or reason as a string literal.
- A ``Condition`` here has no ``observedGeneration`` or ``lastTransitionTime``: the model
  says *what* holds; only the reconciler stamps *when* (see ``rauta.model.status.stamp``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict


class CondType(StrEnum):
    ACCEPTED = "Accepted"
    PROGRAMMED = "Programmed"
    RESOLVED_REFS = "ResolvedRefs"
    CONFLICTED = "Conflicted"
    SUPPORTED_VERSION = "SupportedVersion"
    PARTIALLY_INVALID = "PartiallyInvalid"


class Reason(StrEnum):
    # shared
    ACCEPTED = "Accepted"
    PROGRAMMED = "Programmed"
    RESOLVED_REFS = "ResolvedRefs"
    PENDING = "Pending"
    INVALID = "Invalid"
    UNSUPPORTED_VALUE = "UnsupportedValue"
    REF_NOT_PERMITTED = "RefNotPermitted"
    # GatewayClass
    INVALID_PARAMETERS = "InvalidParameters"
    UNSUPPORTED = "Unsupported"
    SUPPORTED_VERSION = "SupportedVersion"
    # Gateway
    LISTENERS_NOT_VALID = "ListenersNotValid"
    NOT_RECONCILED = "NotReconciled"
    UNSUPPORTED_ADDRESS = "UnsupportedAddress"
    NO_RESOURCES = "NoResources"
    ADDRESS_NOT_ASSIGNED = "AddressNotAssigned"
    ADDRESS_NOT_USABLE = "AddressNotUsable"
    # Listener
    PORT_UNAVAILABLE = "PortUnavailable"
    UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
    HOSTNAME_CONFLICT = "HostnameConflict"
    PROTOCOL_CONFLICT = "ProtocolConflict"
    NO_CONFLICTS = "NoConflicts"
    INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
    INVALID_ROUTE_KINDS = "InvalidRouteKinds"
    # Route
    NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
    NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
    NO_MATCHING_PARENT = "NoMatchingParent"
    INVALID_KIND = "InvalidKind"
    BACKEND_NOT_FOUND = "BackendNotFound"


Status = Literal["True", "False", "Unknown"]


class Condition(BaseModel):
    """A condition as the model computes it: type, status, reason, message."""

    model_config = ConfigDict(frozen=True)

    type: CondType
    status: Status
    reason: Reason
    message: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "type": self.type.value,
            "status": self.status,
            "reason": self.reason.value,
            "message": self.message,
        }


MAX_MESSAGE = 1024  # the CRDs allow 32768; a long list of problems is cut, never rejected


def cond(type_: CondType, ok: bool, reason: Reason, message: str = "") -> Condition:
    """Build a True (``ok``) or False condition (messages cut to ``MAX_MESSAGE``)."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return Condition(type=type_, status="True" if ok else "False", reason=reason, message=message)
