"""SERVER spans become request events field by field; CLIENT spans name their request's
dependency without being counted as requests; every other span is counted, never emitted."""

from __future__ import annotations

import pytest

from canarystream.contracts.events import RequestSample
from canarystream.ingest import IngestOptions, convert
from canarystream.ingest.spans import convert_traces
from tests.ingest.otlp_build import CLIENT, INTERNAL, SERVER, T0_NS, resource, span, traces

SHOP = resource(service="shop", version="1.4.2", **{"service.instance.id": "pod-7"})


def test_a_server_span_is_one_request_event_field_by_field() -> None:
    request = traces(
        (
            resource(service="shop", version="1.4.2", **{"service.instance.id": "pod-7",
                     "cloud.availability_zone": "eu-west-1a"}),
            [span(1, SERVER, ms=42.25, **{"http.route": "/cart/{id}",
                                          "http.response.status_code": 503})],
        )
    )  # fmt: skip
    result = convert(request.SerializeToString(), "traces", "otlp_proto")
    assert result.events == [
        {
            "type": "request",
            "ts": T0_NS / 1e9,
            "service": "shop",
            "version": "1.4.2",
            "latency_ms": 42.25,
            "status": 503,
            "endpoint": "/cart/{id}",
            "instance": "pod-7",
            "zone": "eu-west-1a",
        }
    ]
    RequestSample.model_validate(result.events[0])
    assert result.spans == {"request": 1}


@pytest.mark.parametrize(
    ("attrs", "error", "status"),
    [
        ({"http.response.status_code": 404}, False, 404),
        ({"http.status_code": 502}, False, 502),  # the old attribute name
        ({"http.response.status_code": 201, "http.status_code": 500}, True, 201),  # new wins
        ({"http.response.status_code": "429"}, False, 429),  # a string of digits
        ({}, True, 500),  # no HTTP status: span status ERROR
        ({}, False, 200),  # no HTTP status, not an error
    ],
)
def test_status_from_the_http_attributes_else_the_span_status(
    attrs: dict[str, object], error: bool, status: int
) -> None:
    result = convert_traces(
        traces((SHOP, [span(1, SERVER, error=error, **attrs)])), IngestOptions()
    )
    assert [event["status"] for event in result.events] == [status]


def test_endpoint_falls_back_to_the_rpc_method_or_is_absent() -> None:
    request = traces(
        (SHOP, [span(1, SERVER, **{"rpc.method": "GetCart"}), span(2, SERVER),
                span(3, SERVER, **{"http.route": "x" * 300})])
    )  # fmt: skip
    events = convert_traces(request, IngestOptions()).events
    assert events[0]["endpoint"] == "GetCart"
    assert "endpoint" not in events[1]
    assert "endpoint" not in events[2]  # longer than the contract allows: left out


def test_client_spans_name_the_dependency_of_their_server_spans_request() -> None:
    request = traces(
        (
            SHOP,
            [
                span(1, SERVER, ms=80, **{"http.route": "/pay"}),
                span(2, INTERNAL, parent=1),
                span(3, CLIENT, parent=2, ms=5, **{"db.system": "postgresql"}),
                span(4, CLIENT, parent=1, ms=30, **{"peer.service": "payments-api"}),
                span(5, SERVER, ms=10, start=T0_NS + 10**9),
                span(6, CLIENT, parent=5, **{"server.address": "cache.internal"}),
            ],
        )
    )
    result = convert_traces(request, IngestOptions())
    assert [e.get("dependency") for e in result.events] == ["payments-api", "cache.internal"]
    assert [e["latency_ms"] for e in result.events] == [80, 10]  # the server's, not the calls'
    assert result.spans == {
        "request": 2,
        "dependency": 2,
        "dependency_superseded": 1,
        "ignored_kind": 1,
    }


def test_a_failed_call_is_kept_before_a_longer_successful_one() -> None:
    request = traces(
        (
            SHOP,
            [
                span(1, SERVER, error=True),
                span(2, CLIENT, parent=1, ms=900, **{"db.system": "redis"}),
                span(3, CLIENT, parent=1, ms=3, error=True, **{"db.system": "postgresql"}),
                span(4, CLIENT, parent=1, ms=4, **{"peer.service": "x",
                                                    "http.response.status_code": 504}),
            ],
        )
    )  # fmt: skip
    (event,) = convert_traces(request, IngestOptions()).events
    assert event["dependency"] == "x"  # failed (504) and longer than the other failed one


def test_client_spans_are_never_requests_of_their_own() -> None:
    request = traces(
        (SHOP, [span(2, CLIENT, parent=1, **{"db.system": "mysql"}),  # its server elsewhere
                span(3, CLIENT, **{"db.system": "mysql"}),  # a root client span
                span(4, CLIENT, parent=9)])  # names nothing
    )  # fmt: skip
    result = convert_traces(request, IngestOptions())
    assert result.events == []
    assert result.spans == {"no_server_span": 2, "no_dependency": 1}


def test_the_parent_chain_stops_at_another_service() -> None:
    other = resource(service="gateway", version="9")
    request = traces(
        (other, [span(1, SERVER), span(2, INTERNAL, parent=1)]),
        (SHOP, [span(3, CLIENT, parent=2, **{"db.system": "mysql"})]),
    )
    result = convert_traces(request, IngestOptions())
    assert [e.get("dependency") for e in result.events] == [None]
    assert result.spans["no_server_span"] == 1


def test_a_parent_cycle_is_not_followed_forever() -> None:
    request = traces(
        (SHOP, [span(1, INTERNAL, parent=2), span(2, INTERNAL, parent=1),
                span(3, CLIENT, parent=1, **{"db.system": "mysql"})])
    )  # fmt: skip
    assert convert_traces(request, IngestOptions()).spans["no_server_span"] == 1


def test_spans_of_other_kinds_are_counted_not_emitted() -> None:
    request = traces((SHOP, [span(i, kind) for i, kind in enumerate((0, 1, 4, 5), start=1)]))
    result = convert_traces(request, IngestOptions())
    assert result.events == [] and result.spans == {"ignored_kind": 4}


def test_spans_without_service_or_version_are_counted() -> None:
    request = traces(
        (resource(version="1"), [span(1, SERVER)]),
        (
            resource(service="shop"),
            [span(2, SERVER), span(3, CLIENT, parent=2, **{"peer.service": "x"})],
        ),
        (resource(service="shop", version=""), [span(4, SERVER)]),
    )
    result = convert_traces(request, IngestOptions())
    assert result.events == []
    assert result.spans == {"no_service": 1, "no_version": 2, "server_span_dropped": 1}


def test_the_version_attribute_is_configurable() -> None:
    request = traces(
        (resource(service="shop", **{"deployment.revision": "r42"}), [span(1, SERVER)])
    )
    assert convert_traces(request, IngestOptions()).spans == {"no_version": 1}
    options = IngestOptions(version_attribute="deployment.revision")
    assert convert_traces(request, options).events[0]["version"] == "r42"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"start": 0}, "invalid_ts"),  # no start time
        ({"start": 2**64 - 10**12, "ms": 0.5}, "invalid_ts"),  # year 2554
        ({"start": 10**9 * 5_000_000_000}, "invalid_ts"),  # after 2100
        ({"ms": -3.0}, "invalid_latency_ms"),  # ends before it starts
        ({"ms": 2 * 3_600_000.0}, "invalid_latency_ms"),  # over the contract's hour
        ({"http.response.status_code": 999}, "invalid_status"),
        ({"http.response.status_code": 42}, "invalid_status"),
        ({"http.response.status_code": "teapot"}, "invalid_status"),
        ({"http.response.status_code": 2.5e2}, "invalid_status"),
    ],
)
def test_a_span_giving_an_invalid_event_is_dropped_with_its_reason(
    kwargs: dict[str, object], reason: str
) -> None:
    request = traces((SHOP, [span(1, SERVER, **kwargs), span(2, SERVER)]))  # type: ignore[arg-type]
    result = convert_traces(request, IngestOptions())
    assert len(result.events) == 1 and result.events[0]["ts"] == T0_NS / 1e9
    assert result.spans == {reason: 1, "request": 1}


def test_the_calls_of_a_dropped_request_are_counted_with_it() -> None:
    request = traces(
        (SHOP, [span(1, SERVER, ms=-1), span(2, CLIENT, parent=1, **{"peer.service": "x"})])
    )
    assert convert_traces(request, IngestOptions()).spans == {
        "invalid_latency_ms": 1,
        "server_span_dropped": 1,
    }
