"""The condition catalog (rauta.model.conditions) spells everything as the spec does."""

from __future__ import annotations

import pydantic
import pytest

from rauta.model.conditions import Condition, CondType, Reason, cond

# Spelled literally from sigs.k8s.io/gateway-api apis/v1 (gateway_types.go,
# gatewayclass_types.go, shared_types.go).
SPEC_TYPES = {
    "ACCEPTED": "Accepted",
    "PROGRAMMED": "Programmed",
    "RESOLVED_REFS": "ResolvedRefs",
    "CONFLICTED": "Conflicted",
    "SUPPORTED_VERSION": "SupportedVersion",
    "PARTIALLY_INVALID": "PartiallyInvalid",
}

SPEC_REASONS = {
    "ACCEPTED": "Accepted",
    "PROGRAMMED": "Programmed",
    "RESOLVED_REFS": "ResolvedRefs",
    "PENDING": "Pending",
    "INVALID": "Invalid",
    "UNSUPPORTED_VALUE": "UnsupportedValue",
    "REF_NOT_PERMITTED": "RefNotPermitted",
    "INVALID_PARAMETERS": "InvalidParameters",
    "UNSUPPORTED": "Unsupported",
    "SUPPORTED_VERSION": "SupportedVersion",
    "LISTENERS_NOT_VALID": "ListenersNotValid",
    "NOT_RECONCILED": "NotReconciled",
    "UNSUPPORTED_ADDRESS": "UnsupportedAddress",
    "NO_RESOURCES": "NoResources",
    "ADDRESS_NOT_ASSIGNED": "AddressNotAssigned",
    "ADDRESS_NOT_USABLE": "AddressNotUsable",
    "PORT_UNAVAILABLE": "PortUnavailable",
    "UNSUPPORTED_PROTOCOL": "UnsupportedProtocol",
    "HOSTNAME_CONFLICT": "HostnameConflict",
    "PROTOCOL_CONFLICT": "ProtocolConflict",
    "NO_CONFLICTS": "NoConflicts",
    "INVALID_CERTIFICATE_REF": "InvalidCertificateRef",
    "INVALID_ROUTE_KINDS": "InvalidRouteKinds",
    "NOT_ALLOWED_BY_LISTENERS": "NotAllowedByListeners",
    "NO_MATCHING_LISTENER_HOSTNAME": "NoMatchingListenerHostname",
    "NO_MATCHING_PARENT": "NoMatchingParent",
    "INVALID_KIND": "InvalidKind",
    "BACKEND_NOT_FOUND": "BackendNotFound",
}


def test_every_condition_type_is_spelled_as_the_spec() -> None:
    assert {m.name: m.value for m in CondType} == SPEC_TYPES


def test_every_reason_is_spelled_as_the_spec() -> None:
    assert {m.name: m.value for m in Reason} == SPEC_REASONS


@pytest.mark.parametrize("reason", [
    # Every reason the Gateway API reference summary lists for the conditions rauta writes.
    "Accepted", "ListenersNotValid", "Invalid", "UnsupportedAddress", "Pending",
    "Programmed", "PortUnavailable", "UnsupportedProtocol", "UnsupportedValue",
    "HostnameConflict", "ProtocolConflict", "NoConflicts", "ResolvedRefs",
    "InvalidCertificateRef", "InvalidRouteKinds", "RefNotPermitted",
    "NotAllowedByListeners", "NoMatchingListenerHostname", "NoMatchingParent",
    "InvalidKind", "BackendNotFound",
])
def test_reference_reasons_exist_in_the_catalog(reason: str) -> None:
    assert Reason(reason).value == reason


def test_cond_builds_true_and_false_conditions() -> None:
    ok = cond(CondType.ACCEPTED, True, Reason.ACCEPTED)
    bad = cond(CondType.RESOLVED_REFS, False, Reason.BACKEND_NOT_FOUND, "Service a/b is gone")
    assert (ok.status, ok.message) == ("True", "")
    assert (bad.status, bad.reason, bad.message) == ("False", Reason.BACKEND_NOT_FOUND,
                                                     "Service a/b is gone")


def test_as_dict_uses_plain_strings_in_fixed_key_order() -> None:
    d = cond(CondType.PROGRAMMED, False, Reason.INVALID, "x").as_dict()
    assert list(d) == ["type", "status", "reason", "message"]
    assert d == {"type": "Programmed", "status": "False", "reason": "Invalid", "message": "x"}
    assert all(type(v) is str for v in d.values())


def test_condition_is_frozen_and_status_is_restricted() -> None:
    c = cond(CondType.ACCEPTED, True, Reason.ACCEPTED)
    with pytest.raises(pydantic.ValidationError):
        c.status = "False"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        Condition(type=CondType.ACCEPTED, status="Maybe", reason=Reason.ACCEPTED)  # type: ignore[arg-type]
