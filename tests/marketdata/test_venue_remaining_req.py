"""Every Upbit /v1/* answer from the venue carries `Remaining-Req` as Upbit sends it, errors included:
`group=<the endpoint's group>; min=<n>; sec=<left this second>` (docs/venue.md, Upbit rate limits). Walks every route
of the Upbit app, so an endpoint added later is covered without touching this test."""

import re
import time

import pytest
import requests

from marketdata.venue.accounts import Accounts
from marketdata.venue.core import Venue
from marketdata.venue.limits import UPBIT_EXCHANGE_LIMITS, upbit_group
from marketdata.venue.market import MarketModel
from marketdata.venue.server import VenueServer, VenueThread
from trading.exchanges.upbit import token

KEY, OTHER, BURST, SECRET = "rr-key", "rr-other", "rr-burst", "e" * 64
HEADER = re.compile(r"^group=([a-z-]+); min=(\d+); sec=(\d+)$")


@pytest.fixture(scope="module")
def venue():
    accounts = Accounts()
    accounts.add("upbit", KEY, SECRET, {"KRW": "100000000", "BTC": "1"})
    accounts.add("upbit", OTHER, SECRET, {"KRW": "100000000"})
    accounts.add("upbit", BURST, SECRET, {"KRW": "100000000"})
    thread = VenueThread(VenueServer(Venue(MarketModel(seed=2)), accounts=accounts, upbit_rate_limit=10**6)).start()
    thread.call(thread.server.control, None, "pause")
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def clean(venue):
    venue.call(venue.server.control, None, "clear")
    yield
    venue.call(venue.server.control, None, "clear")


def v1_routes(venue) -> list[tuple[str, str]]:
    """(method, path) of every /v1/* route of the Upbit app, path parameters filled in."""
    out = set()
    for route in venue.server.upbit.app().router.routes():
        path = re.sub(r"\{[^}]*\}", "x", route.resource.canonical)
        if path.startswith("/v1/") and route.method != "*":
            out.add((route.method, path))
    return sorted(out)


def call(venue, method, path, *, signed=None, params=None):
    headers = {"Authorization": f"Bearer {token(signed, SECRET, params)}"} if signed else {}
    return requests.request(method, venue.server.upbit_url + path, params=params, headers=headers, timeout=5)


def remaining(response, method, path):
    header = response.headers.get("Remaining-Req")
    assert header, f"{method} {path} -> {response.status_code} without Remaining-Req"
    match = HEADER.match(header)
    assert match, header
    assert match.group(1) == upbit_group(method, path), (method, path, header)
    return int(match.group(3))


def test_every_route_answers_with_remaining_req_errors_included(venue):
    routes = v1_routes(venue)
    assert {("GET", "/v1/market/all"), ("GET", "/v1/orderbook"), ("POST", "/v1/orders"), ("GET", "/v1/accounts")} <= set(routes)
    statuses = set()
    for method, path in routes + [("GET", "/v1/no-such-endpoint"), ("PUT", "/v1/accounts")]:
        for signed in (None, KEY):  # anonymous (401 on the Exchange API), then signed without params
            response = call(venue, method, path, signed=signed)
            remaining(response, method, path)
            statuses.add(response.status_code)
    assert {200, 400, 401, 404, 405} <= statuses, statuses


@pytest.mark.parametrize("kind", ["refuse_429", "refuse_418", "error_5xx_after"])
def test_fault_answers_carry_it_too(venue, kind):
    for method, path in v1_routes(venue):
        if method == "HEAD":
            continue
        venue.call(venue.server.control, "upbit", "fault", kind=kind, method=method, path=path)
        response = call(venue, method, path, signed=KEY)
        assert response.status_code == {"refuse_429": 429, "refuse_418": 418}.get(kind, 500), (method, path)
        left = remaining(response, method, path)
        if kind != "error_5xx_after":
            assert left == 0 and "min=0;" in response.headers["Remaining-Req"]


def test_exchange_groups_count_per_pocket_and_refuse_over_the_limit(venue):
    limit = UPBIT_EXCHANGE_LIMITS["default"][0]
    # The venue counts in fixed one-second windows of the same monotonic clock: start at one's
    # beginning, so that the whole burst (a few ms a request here) falls in it.
    time.sleep(1.0 - time.monotonic() % 1.0)
    seen = []
    for _ in range(limit + 1):
        response = call(venue, "GET", "/v1/accounts", signed=BURST)
        seen.append((response.status_code, remaining(response, "GET", "/v1/accounts")))
    assert seen == [(200, n) for n in range(limit - 1, -1, -1)] + [(429, 0)], seen
    assert response.json()["error"]["name"] == "too_many_requests"
    # Another pocket has its own budget.
    other = call(venue, "GET", "/v1/accounts", signed=OTHER)
    assert other.status_code == 200 and remaining(other, "GET", "/v1/accounts") >= limit - 2
    # And the next second brings the budget back.
    time.sleep(1.0 - time.monotonic() % 1.0)
    again = call(venue, "GET", "/v1/accounts", signed=BURST)
    assert again.status_code == 200 and remaining(again, "GET", "/v1/accounts") == limit - 1


def test_an_order_counts_in_the_order_group(venue):
    body = {"market": "KRW-BTC", "side": "bid", "ord_type": "limit", "volume": "0.0001", "price": "60000000"}
    response = requests.post(venue.server.upbit_url + "/v1/orders", json=body,
                             headers={"Authorization": f"Bearer {token(KEY, SECRET, body)}"}, timeout=5)
    assert response.status_code == 201, response.text
    left = remaining(response, "POST", "/v1/orders")
    assert left < UPBIT_EXCHANGE_LIMITS["order"][0]
    assert response.headers["Remaining-Req"].startswith("group=order; ")
