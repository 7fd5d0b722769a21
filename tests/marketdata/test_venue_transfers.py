"""The venue's transfers over real HTTP: both dialects' wallet endpoints, one world between them.

Shapes against the exchanges' own payloads (tests/fixtures), withdrawals that arrive on the other
dialect with the fee and the delay, every refusal, suspended networks, the Upbit allow-list, the
travel-rule hold, lost deposits, and the fault rules on the new paths.
"""

import time
import uuid
from decimal import Decimal as D
from urllib.parse import urlencode

import pytest
import requests

from marketdata.venue.accounts import Accounts
from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel
from marketdata.venue.server import VenueServer, VenueThread
from tests.exchange_fixtures import load
from trading.exchanges.binance import sign
from trading.exchanges.upbit import query_string, token

SECRET = "t" * 64
BN, UP = "bn-transfer", "up-transfer"
DELAY = 0.6  # transfer_delay (s) unless a test sets its own


@pytest.fixture(scope="module")
def venue():
    accounts = Accounts()
    accounts.add("binance", BN, SECRET, {"BTC": "1", "USDT": "10000", "XRP": "1000", "ETH": "0"})
    accounts.add("upbit", UP, SECRET, {"BTC": "1", "KRW": "100000000", "XRP": "1000", "USDT": "1000"})
    thread = VenueThread(VenueServer(Venue(MarketModel(seed=11)), accounts=accounts, drive=False)).start()
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def clean(venue):
    venue.call(venue.server.control, None, "clear")
    venue.call(venue.server.control, None, "transfer_delay", seconds=DELAY)
    yield
    venue.call(venue.server.control, None, "clear")
    # Let what is in flight land, so that no test sees another's deposit arrive.
    wait_for(lambda: venue.call(venue.server.transfers.summary)["in_flight"] == 0, timeout=10)


def control(venue, exchange, **body):
    url = venue.server.binance_url if exchange == "binance" else venue.server.upbit_url
    response = requests.post(f"{url}/_venue/control", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def binance(venue, method, path, params=None, timeout=5.0):
    query = urlencode(dict(params or {}, recvWindow=5000, timestamp=int(time.time() * 1000)))
    url = f"{venue.server.binance_url}{path}?{query}&signature={sign(SECRET, query)}"
    return requests.request(method, url, headers={"X-MBX-APIKEY": BN}, timeout=timeout)


def upbit(venue, method, path, params=None, body=None, timeout=5.0):
    headers = {"Authorization": f"Bearer {token(UP, SECRET, body if body is not None else params)}"}
    url = f"{venue.server.upbit_url}{path}"
    if body is not None:
        return requests.request(method, url, json=body, headers=headers, timeout=timeout)
    return requests.request(method, url, params=query_string(params) or None, headers=headers, timeout=timeout)


def balance(venue, exchange, asset) -> tuple[D, D]:
    accounts = venue.server.accounts.binance if exchange == "binance" else venue.server.accounts.upbit
    key = BN if exchange == "binance" else UP
    return venue.call(lambda: (accounts[key].balances.get(asset, D(0)), accounts[key].locked.get(asset, D(0))))


def upbit_address(venue, currency, net_type) -> dict:
    for _ in range(50):
        body = upbit(venue, "POST", "/v1/deposits/generate_coin_address", body={"currency": currency, "net_type": net_type}).json()
        if body.get("deposit_address"):
            return body
        time.sleep(0.1)
    raise AssertionError("no address")


def binance_address(venue, coin, network=None) -> dict:
    params = {"coin": coin} | ({"network": network} if network else {})
    response = binance(venue, "GET", "/sapi/v1/capital/deposit/address", params)
    assert response.status_code == 200, response.text
    return response.json()


def register(venue, asset, network, address, tag=""):
    return control(venue, "upbit", action="register_address", key=UP, asset=asset, network=network, address=address, tag=tag)


def wait_for(check, timeout=5.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def records(venue):
    transfers = venue.server.transfers
    return venue.call(lambda: (list(transfers.withdrawals.values()), list(transfers.deposits.values())))


def keys(obj) -> set:
    return set(obj)


# --- shapes -----------------------------------------------------------------------------------------
def test_binance_coin_config_has_the_documented_shape_and_the_venues_own_table(venue):
    response = binance(venue, "GET", "/sapi/v1/capital/config/getall")
    assert response.status_code == 200
    coins = {c["coin"]: c for c in response.json()}
    doc = load("binance_rest_capital_config_getall_docexample")[0]
    assert keys(doc) == keys(coins["BTC"])
    assert keys(doc["networkList"][0]) - {"denomination"} <= keys(coins["BTC"]["networkList"][0])
    usdt = {n["network"]: n for n in coins["USDT"]["networkList"]}
    assert set(usdt) == {"TRX", "ETH"} and usdt["TRX"]["isDefault"] and not usdt["ETH"]["isDefault"]
    assert (usdt["TRX"]["withdrawFee"], usdt["TRX"]["withdrawMin"], usdt["TRX"]["withdrawIntegerMultiple"]) == ("1", "10", "0.000001")
    xrp = coins["XRP"]["networkList"][0]
    assert xrp["withdrawTag"] is True and xrp["memoRegex"] and isinstance(xrp["minConfirm"], int)
    assert coins["BTC"]["free"] == "1" and "BNB" in coins  # Binance's own coin (Upbit lists no BNB)
    # Weight 10 against the /sapi IP limit.
    again = binance(venue, "GET", "/sapi/v1/capital/config/getall")
    assert int(again.headers["X-SAPI-USED-IP-WEIGHT-1M"]) - int(response.headers["X-SAPI-USED-IP-WEIGHT-1M"]) == 10


def test_binance_deposit_address_is_the_documented_shape_and_deterministic(venue):
    btc = binance_address(venue, "BTC")
    assert keys(btc) == keys(load("binance_rest_capital_deposit_address_docexample"))
    assert btc == binance_address(venue, "BTC", "BTC") and btc["tag"] == "" and btc["address"] in btc["url"]
    assert binance_address(venue, "USDT")["address"].startswith("T")  # the default network: TRX
    assert binance_address(venue, "USDT", "ETH")["address"].startswith("0x")
    xrp = binance_address(venue, "XRP")
    assert xrp["tag"].isdigit() and xrp["address"].startswith("r")
    unknown = binance(venue, "GET", "/sapi/v1/capital/deposit/address", {"coin": "NOPE"})
    assert unknown.status_code == 400 and unknown.json() == {"code": -4018, "msg": "We don't have this asset."}


def test_upbit_deposit_address_is_made_asynchronously(venue):
    missing = upbit(venue, "GET", "/v1/deposits/coin_address", {"currency": "ETH", "net_type": "ETH"})
    assert missing.status_code == 404 and missing.json()["error"]["name"] == "coin_address_not_found"
    assert missing.headers["Remaining-Req"].startswith("group=default;")
    first = upbit(venue, "POST", "/v1/deposits/generate_coin_address", body={"currency": "ETH", "net_type": "ETH"})
    assert first.status_code == 201
    assert first.json() == {"success": True, "message": "Creating ETH deposit address."}
    assert keys(first.json()) == keys(load("upbit_rest_deposits_generate_coin_address_pending_legacydoc"))
    pending = upbit(venue, "GET", "/v1/deposits/coin_address", {"currency": "ETH", "net_type": "ETH"}).json()
    assert pending == {"currency": "ETH", "net_type": "ETH", "deposit_address": None, "secondary_address": None}
    ready = upbit_address(venue, "ETH", "ETH")
    assert keys(ready) == keys(load("upbit_rest_deposits_generate_coin_address_docexample"))
    assert ready["deposit_address"].startswith("0x") and ready["secondary_address"] is None
    single = upbit(venue, "GET", "/v1/deposits/coin_address", {"currency": "ETH", "net_type": "ETH"}).json()
    assert single == ready and keys(single) == keys(load("upbit_rest_deposits_coin_address_docexample"))
    xrp = upbit_address(venue, "XRP", "XRP")
    assert xrp["secondary_address"].isdigit()
    listed = upbit(venue, "GET", "/v1/deposits/coin_addresses").json()
    assert {(a["currency"], a["deposit_address"]) for a in listed} >= {("ETH", ready["deposit_address"]), ("XRP", xrp["deposit_address"])}
    assert all(keys(a) == keys(load("upbit_rest_deposits_coin_addresses_docexample")[0]) for a in listed)


def test_upbit_chance_and_wallet_status_have_the_documented_shapes(venue):
    chance = upbit(venue, "GET", "/v1/withdraws/chance", {"currency": "BTC", "net_type": "BTC"})
    assert chance.status_code == 200 and chance.headers["Remaining-Req"].startswith("group=default;")
    body, doc = chance.json(), load("upbit_rest_withdraws_chance_docexample")
    assert keys(body) == keys(doc)
    assert keys(doc["currency"]) == keys(body["currency"]) and keys(doc["account"]) == keys(body["account"])
    assert keys(doc["withdraw_limit"]) - {"remaining_daily_sgd"} <= keys(body["withdraw_limit"])  # KR: fiat is KRW
    assert keys(doc["member_level"]) <= keys(body["member_level"])
    assert body["currency"]["withdraw_fee"] == "0.0008" and body["withdraw_limit"]["minimum"] == "0.00001"
    assert body["withdraw_limit"]["fixed"] == 8 and body["currency"]["wallet_support"] == ["deposit", "withdraw"]
    assert body["account"]["balance"] == "1.0"
    deposit = upbit(venue, "GET", "/v1/deposits/chance/coin", {"currency": "BTC", "net_type": "BTC"}).json()
    assert keys(deposit) == keys(load("upbit_rest_deposits_chance_coin_docexample"))
    assert deposit["is_deposit_possible"] is True and deposit["minimum_deposit_confirmations"] == 1
    status = upbit(venue, "GET", "/v1/status/wallet").json()
    assert all(keys(s) == keys(load("upbit_rest_status_wallet_docexample")[0]) for s in status)
    assert {(s["currency"], s["net_type"]) for s in status} >= {("BTC", "BTC"), ("USDT", "TRX"), ("XRP", "XRP")}
    assert "BNB" not in {s["currency"] for s in status}
    no_net = upbit(venue, "GET", "/v1/withdraws/chance", {"currency": "BTC"})
    assert no_net.status_code == 400 and no_net.json()["error"] == {"name": "validation_error", "message": "net_type is missing"}
    unknown = upbit(venue, "GET", "/v1/deposits/chance/coin", {"currency": "NOPE", "net_type": "NOPE"})
    assert unknown.status_code == 404 and unknown.json()["error"]["name"] == "currency_not_found"
    assert unknown.headers["Remaining-Req"].startswith("group=default;")


# --- round trips ----------------------------------------------------------------------------------
def test_binance_to_upbit_moves_the_balances_with_the_fee_and_the_delay(venue):
    target = upbit_address(venue, "BTC", "BTC")
    bn_before, up_before = balance(venue, "binance", "BTC"), balance(venue, "upbit", "BTC")
    started = time.time()
    applied = binance(venue, "POST", "/sapi/v1/capital/withdraw/apply",
                      {"coin": "BTC", "network": "BTC", "address": target["deposit_address"], "amount": "0.0102",
                       "withdrawOrderId": "rt-bn-1"})
    assert applied.status_code == 200 and keys(applied.json()) == keys(load("binance_rest_capital_withdraw_apply_docexample"))
    wid = applied.json()["id"]
    assert len(wid) == 32 and int(wid, 16) >= 0
    assert int(applied.headers["X-SAPI-USED-UID-WEIGHT-1M"]) >= 900
    # At once: the requested amount (fee included) leaves free for locked.
    assert balance(venue, "binance", "BTC") == (bn_before[0] - D("0.0102"), bn_before[1] + D("0.0102"))
    history = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"withdrawOrderId": "rt-bn-1"}).json()
    assert len(history) == 1 and history[0]["status"] in (2, 4) and history[0]["txId"] == ""
    assert (history[0]["amount"], history[0]["transactionFee"]) == ("0.01", "0.0002")

    def sent():
        rows = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"idList": wid}).json()
        return rows[0] if rows[0]["status"] == 6 else None

    done = wait_for(sent)
    assert keys(load("binance_rest_capital_withdraw_history_docexample")[0]) == keys(done)
    assert done["withdrawOrderId"] == "rt-bn-1" and done["txId"] and done["confirmNo"] == 1
    assert balance(venue, "binance", "BTC") == (bn_before[0] - D("0.0102"), bn_before[1])
    pending = upbit(venue, "GET", "/v1/deposits", {"currency": "BTC"}).json()
    mine = [d for d in pending if d["txid"] == done["txId"]]
    assert len(mine) == 1 and mine[0]["state"] == "PROCESSING" and mine[0]["amount"] == "0.01"
    assert balance(venue, "upbit", "BTC") == up_before  # not before the confirmation delay

    def accepted():
        row = upbit(venue, "GET", "/v1/deposit", {"uuid": mine[0]["uuid"]}).json()
        return row if row["state"] == "ACCEPTED" else None

    row = wait_for(accepted)
    assert time.time() - started >= DELAY * 0.95
    assert keys(row) == keys(load("upbit_rest_deposit_ccxtcomment")) and row["fee"] == "0.0" and row["done_at"]
    assert balance(venue, "upbit", "BTC") == (up_before[0] + D("0.01"), up_before[1])


def test_upbit_to_binance_charges_the_fee_on_top_and_credits_after_the_delay(venue):
    target = binance_address(venue, "XRP")
    register(venue, "XRP", "XRP", target["address"], target["tag"])
    allowed = upbit(venue, "GET", "/v1/withdraws/coin_addresses").json()
    assert keys(allowed[0]) == keys(load("upbit_rest_withdraws_coin_addresses_docexample")[0])
    assert [a["exchange_name"] for a in allowed if a["withdraw_address"] == target["address"]] == ["Binance"]
    up_before, bn_before = balance(venue, "upbit", "XRP"), balance(venue, "binance", "XRP")
    created = upbit(venue, "POST", "/v1/withdraws/coin",
                    body={"currency": "XRP", "net_type": "XRP", "amount": "25", "address": target["address"],
                          "secondary_address": target["tag"], "transaction_type": "default"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert keys(body) == keys(load("upbit_rest_withdraws_coin_docexample"))
    assert (body["state"], body["amount"], body["fee"], body["is_cancelable"], body["txid"]) == ("WAITING", "25.0", "1.0", True, None)
    assert balance(venue, "upbit", "XRP") == (up_before[0] - D("26"), up_before[1] + D("26"))

    def credited_locked():
        rows = binance(venue, "GET", "/sapi/v1/capital/deposit/hisrec", {"coin": "XRP"}).json()
        return rows[0] if rows and rows[0]["status"] == 6 else None

    locked = wait_for(credited_locked)
    assert keys(load("binance_rest_capital_deposit_hisrec_docexample")[0]) - {"completeTime"} <= keys(locked)
    assert (locked["amount"], locked["addressTag"], locked["confirmTimes"]) == ("25", target["tag"], "1/1")
    assert balance(venue, "binance", "XRP") == (bn_before[0], bn_before[1] + D("25"))  # credited, still locked
    done = upbit(venue, "GET", "/v1/withdraw", {"uuid": body["uuid"]}).json()
    assert done["state"] == "DONE" and done["txid"] == locked["txId"] and done["is_cancelable"] is False
    assert keys(done) == keys(load("upbit_rest_withdraw_done_tutorial_docexample"))
    assert balance(venue, "upbit", "XRP") == (up_before[0] - D("26"), up_before[1])

    def success():
        rows = binance(venue, "GET", "/sapi/v1/capital/deposit/hisrec", {"coin": "XRP", "status": 1}).json()
        return rows[0] if rows else None

    row = wait_for(success)
    assert keys(load("binance_rest_capital_deposit_hisrec_docexample")[0]) <= keys(row)
    assert balance(venue, "binance", "XRP") == (bn_before[0] + D("25"), bn_before[1])
    source = binance(venue, "GET", "/sapi/v1/capital/deposit/hisrec", {"coin": "XRP", "includeSource": "true"}).json()
    assert source[0]["sourceAddress"].startswith("r")


# --- refusals --------------------------------------------------------------------------------------
BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
XRP_ADDRESS = "rN9qNpgnBaZwqCg8CvUZRPqCcPPY7wfWep"

BINANCE_REFUSALS = [
    ({"coin": "BTC", "address": BTC_ADDRESS}, -1102, "Mandatory parameter 'amount' was not sent, was empty/null, or malformed."),
    ({"coin": "NOPE", "address": BTC_ADDRESS, "amount": "1"}, -4018, "We don't have this asset."),
    ({"coin": "BTC", "network": "ETH", "address": BTC_ADDRESS, "amount": "0.01"}, -4019, "Current asset is not open for withdrawal."),
    ({"coin": "BTC", "address": "0x94df8b352de7f46f64b01d3666bf6e936e44ce60", "amount": "0.01"}, -4033, "Illegal address."),
    ({"coin": "BTC", "address": BTC_ADDRESS, "addressTag": "123", "amount": "0.01"}, -4106, "Tag is not supported for this network."),
    ({"coin": "XRP", "address": XRP_ADDRESS, "amount": "30"}, -4008, "Address tag validation is not passed."),
    ({"coin": "XRP", "address": XRP_ADDRESS, "addressTag": "memo!", "amount": "30"}, -4008, "Address tag validation is not passed."),
    ({"coin": "BTC", "address": BTC_ADDRESS, "amount": "0.000000001"}, -4021, "Asset withdrawal must be an integer multiple of 0.00000001."),
    ({"coin": "BTC", "address": BTC_ADDRESS, "amount": "0.0002"}, -4028, "The amount of withdrawal must be greater than the Commission."),
    ({"coin": "BTC", "address": BTC_ADDRESS, "amount": "0.0005"}, -4022, "Not less than the minimum pick-up quantity 0.001."),
    ({"coin": "BTC", "address": BTC_ADDRESS, "amount": "2"}, -4026, "You have insufficient balance."),
    ({"coin": "SOL", "address": "So11111111111111111111111111111111111111112", "amount": "1"}, -4024, "You don't have this asset."),
    ({"coin": "BTC", "address": BTC_ADDRESS, "amount": "1e"}, -1100, None),
]


@pytest.mark.parametrize(("params", "code", "msg"), BINANCE_REFUSALS, ids=[str(c) for _p, c, _m in BINANCE_REFUSALS])
def test_binance_withdrawal_refusals_leave_nothing_behind(venue, params, code, msg):
    before = balance(venue, "binance", params["coin"]), len(records(venue)[0])
    response = binance(venue, "POST", "/sapi/v1/capital/withdraw/apply", dict(params, withdrawOrderId=f"r{uuid.uuid4().hex[:8]}"))
    assert response.status_code == 400 and response.json()["code"] == code, response.text
    if msg:
        assert response.json()["msg"] == msg
    assert (balance(venue, "binance", params["coin"]), len(records(venue)[0])) == before


def test_binance_suspended_network_is_published_and_refused(venue):
    assert control(venue, "binance", action="network", asset="BTC", withdraw=False) == {"ok": True, "networks": ["BTC"]}
    btc = next(c for c in binance(venue, "GET", "/sapi/v1/capital/config/getall").json() if c["coin"] == "BTC")
    net = btc["networkList"][0]
    assert (net["withdrawEnable"], net["depositEnable"], btc["withdrawAllEnable"]) == (False, True, False)
    assert net["withdrawDesc"] == "Wallet Maintenance, Withdrawal Suspended"
    refused = binance(venue, "POST", "/sapi/v1/capital/withdraw/apply", {"coin": "BTC", "address": BTC_ADDRESS, "amount": "0.01"})
    assert refused.json() == {"code": -4019, "msg": "Current asset is not open for withdrawal."}
    control(venue, "binance", action="network", asset="BTC", withdraw=True)
    assert binance(venue, "POST", "/sapi/v1/capital/withdraw/apply", {"coin": "BTC", "address": BTC_ADDRESS, "amount": "0.01"}).status_code == 200


def test_upbit_withdrawal_refusals_leave_nothing_behind(venue):
    target = binance_address(venue, "BTC")
    xrp = binance_address(venue, "XRP")
    register(venue, "BTC", "BTC", target["address"])
    register(venue, "XRP", "XRP", xrp["address"], xrp["tag"])
    before = balance(venue, "upbit", "BTC"), balance(venue, "upbit", "XRP"), len(records(venue)[0])

    def refused(body, status=400):
        response = upbit(venue, "POST", "/v1/withdraws/coin", body=body)
        assert response.status_code == status, response.text
        assert response.headers["Remaining-Req"].startswith("group=default;")
        return response.json()

    btc = {"currency": "BTC", "net_type": "BTC", "address": target["address"]}
    assert refused({"currency": "BTC", "net_type": "BTC", "address": target["address"]})["error"]["name"] == "validation_error"
    assert refused({**btc, "currency": "NOPE", "amount": "1"}, 404)["error"]["name"] == "currency_not_found"
    assert refused({**btc, "net_type": "TRX", "amount": "0.01"})["error"]["name"] == "validation_error"
    assert refused({**btc, "amount": "0.01", "address": BTC_ADDRESS}) == load("upbit_rest_error_withdraw_address_not_registered_wire")
    assert refused({**btc, "amount": "0.01", "secondary_address": "1"})["error"]["name"] == "validation_error"
    wrong_tag = {"currency": "XRP", "net_type": "XRP", "amount": "10", "address": xrp["address"], "secondary_address": "1"}
    assert refused(wrong_tag)["error"]["name"] == "withdraw_address_not_registered"
    no_tag = {"currency": "XRP", "net_type": "XRP", "amount": "10", "address": xrp["address"]}
    assert refused(no_tag)["error"]["name"] == "withdraw_address_not_registered"
    assert refused({**btc, "amount": "0.000000001"})["error"]["name"] == "validation_error"  # 9 decimals > fixed 8
    assert refused({**btc, "amount": "0.000001"})["error"]["name"] == "under_min_amount"
    too_much = before[0][0] - D("0.0008") + D("0.00000001")  # with the 0.0008 fee on top: 1e-8 more than there is
    assert refused({**btc, "amount": f"{too_much:f}"})["error"]["name"] == "insufficient_funds"
    assert refused({**btc, "amount": "abc"})["error"]["name"] == "validation_error"
    control(venue, "upbit", action="network", asset="BTC", withdraw=False)
    assert refused({**btc, "amount": "0.01"})["error"]["name"] == "withdraw_suspended"
    assert (balance(venue, "upbit", "BTC"), balance(venue, "upbit", "XRP"), len(records(venue)[0])) == before


def test_register_address_checks_the_address(venue):
    url = f"{venue.server.upbit_url}/_venue/control"
    for bad in ({"address": "not-an-address", "network": "BTC", "asset": "BTC"},
                {"address": XRP_ADDRESS, "network": "XRP", "asset": "XRP"},  # the tag is missing
                {"address": BTC_ADDRESS, "network": "TRX", "asset": "BTC"}):
        assert requests.post(url, json={"action": "register_address", "key": UP, **bad}, timeout=5).status_code == 400


def test_upbit_suspended_deposits_wait_until_switched_back_on(venue):
    target = upbit_address(venue, "BTC", "BTC")
    control(venue, "upbit", action="network", asset="BTC", deposit=False)
    chance = upbit(venue, "GET", "/v1/deposits/chance/coin", {"currency": "BTC", "net_type": "BTC"}).json()
    assert chance["is_deposit_possible"] is False and chance["deposit_impossible_reason"]
    status = {(s["currency"], s["net_type"]): s for s in upbit(venue, "GET", "/v1/status/wallet").json()}
    assert status[("BTC", "BTC")]["wallet_state"] == "withdraw_only"
    up_before = balance(venue, "upbit", "BTC")
    applied = binance(venue, "POST", "/sapi/v1/capital/withdraw/apply",
                      {"coin": "BTC", "address": target["deposit_address"], "amount": "0.002"}).json()
    time.sleep(DELAY * 1.5)
    withdrawn = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"idList": applied["id"]}).json()[0]
    deposit = upbit(venue, "GET", "/v1/deposit", {"txid": withdrawn["txId"]}).json()
    assert withdrawn["status"] == 6 and deposit["state"] == "PROCESSING" and balance(venue, "upbit", "BTC") == up_before
    control(venue, "upbit", action="network", asset="BTC", deposit=True)
    wait_for(lambda: upbit(venue, "GET", "/v1/deposit", {"uuid": deposit["uuid"]}).json()["state"] == "ACCEPTED")
    assert balance(venue, "upbit", "BTC")[0] == up_before[0] + D("0.0018")


def test_upbit_withdrawal_can_be_cancelled_while_waiting(venue):
    control(venue, "upbit", action="transfer_delay", seconds=30)
    target = binance_address(venue, "BTC")
    register(venue, "BTC", "BTC", target["address"])
    before = balance(venue, "upbit", "BTC")
    w = upbit(venue, "POST", "/v1/withdraws/coin", body={"currency": "BTC", "net_type": "BTC", "amount": "0.01",
                                                         "address": target["address"]}).json()
    assert balance(venue, "upbit", "BTC") == (before[0] - D("0.0108"), before[1] + D("0.0108"))
    with_body = requests.delete(f"{venue.server.upbit_url}/v1/withdraws/coin", params={"uuid": w["uuid"]}, json={"uuid": w["uuid"]},
                                headers={"Authorization": f"Bearer {token(UP, SECRET, {'uuid': w['uuid']})}"}, timeout=5)
    assert with_body.json()["error"]["name"] == "QUERY_PARAMETER_NOT_SUPPORTED"
    cancelled = upbit(venue, "DELETE", "/v1/withdraws/coin", {"uuid": w["uuid"]})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "CANCELLED" and cancelled.json()["is_cancelable"] is False
    assert balance(venue, "upbit", "BTC") == before
    again = upbit(venue, "DELETE", "/v1/withdraws/coin", {"uuid": w["uuid"]})
    assert again.status_code == 400 and again.json()["error"]["name"] == "withdraw_not_cancelable"
    unknown = upbit(venue, "DELETE", "/v1/withdraws/coin", {"uuid": str(uuid.uuid4())})
    assert unknown.status_code == 404 and unknown.json()["error"]["name"] == "withdraw_not_found"
    assert upbit(venue, "GET", "/v1/withdraws", {"state": "CANCELLED", "uuids": [w["uuid"]]}).json()[0]["uuid"] == w["uuid"]


def test_a_failed_withdrawal_gives_the_funds_back(venue):
    control(venue, "binance", action="transfer_delay", seconds=30)
    before = balance(venue, "binance", "BTC")
    applied = binance(venue, "POST", "/sapi/v1/capital/withdraw/apply", {"coin": "BTC", "address": BTC_ADDRESS, "amount": "0.003"}).json()
    assert control(venue, "binance", action="fail_withdrawal", id=applied["id"], reason="The address is not valid.") == {"ok": True, "state": "FAILED"}
    row = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"idList": applied["id"]}).json()[0]
    assert (row["status"], row["info"]) == (5, "The address is not valid.")
    assert balance(venue, "binance", "BTC") == before


# --- holds and losses ------------------------------------------------------------------------------
def test_travel_rule_hold_keeps_a_deposit_from_binance_until_released(venue):
    target = upbit_address(venue, "USDT", "TRX")
    control(venue, "upbit", action="travel_rule_hold", on=True)
    before = balance(venue, "upbit", "USDT")
    applied = binance(venue, "POST", "/sapi/v1/capital/withdraw/apply",
                      {"coin": "USDT", "network": "TRX", "address": target["deposit_address"], "amount": "51"}).json()

    def held():
        rows = [d for d in upbit(venue, "GET", "/v1/deposits", {"currency": "USDT", "state": "TRAVEL_RULE_SUSPECTED"}).json()]
        return rows[0] if rows else None

    deposit = held() or wait_for(held)
    sent = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"idList": applied["id"]}).json()[0]
    assert deposit["txid"] == sent["txId"] and deposit["amount"] == "50.0" and deposit["done_at"] is None
    time.sleep(DELAY / 2)
    assert upbit(venue, "GET", "/v1/deposit", {"uuid": deposit["uuid"]}).json()["state"] == "TRAVEL_RULE_SUSPECTED"
    assert balance(venue, "upbit", "USDT") == before  # not credited while held
    assert control(venue, "upbit", action="travel_rule_release", uuid=deposit["uuid"]) == {"ok": True, "released": 1}
    assert upbit(venue, "GET", "/v1/deposit", {"uuid": deposit["uuid"]}).json()["state"] == "ACCEPTED"
    assert balance(venue, "upbit", "USDT") == (before[0] + D("50"), before[1])


def test_lose_deposit_leaves_the_withdrawal_done_and_no_deposit(venue):
    target = upbit_address(venue, "BTC", "BTC")
    control(venue, "binance", action="lose_deposit", on=True)
    before = balance(venue, "binance", "BTC"), balance(venue, "upbit", "BTC")
    applied = binance(venue, "POST", "/sapi/v1/capital/withdraw/apply",
                      {"coin": "BTC", "address": target["deposit_address"], "amount": "0.005", "withdrawOrderId": "lost-1"}).json()
    control(venue, "binance", action="lose_deposit", on=False)  # only what was sent meanwhile is lost
    time.sleep(DELAY * 1.5)
    row = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"idList": applied["id"]}).json()[0]
    assert row["status"] == 6 and row["txId"]
    assert upbit(venue, "GET", "/v1/deposit", {"txid": row["txId"]}).status_code == 404
    assert balance(venue, "binance", "BTC") == (before[0][0] - D("0.005"), before[0][1])
    assert balance(venue, "upbit", "BTC") == before[1]


# --- lists, filters, limits -------------------------------------------------------------------------
def test_histories_filter_and_page_as_documented(venue):
    target = upbit_address(venue, "BTC", "BTC")
    ids = [binance(venue, "POST", "/sapi/v1/capital/withdraw/apply",
                   {"coin": "BTC", "address": target["deposit_address"], "amount": "0.0012", "withdrawOrderId": f"h{i}"}).json()["id"]
           for i in range(3)]
    by_ids = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"idList": ",".join(ids[:2])}).json()
    assert {r["id"] for r in by_ids} == set(ids[:2])
    newest_first = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"coin": "BTC", "limit": 2}).json()
    assert [r["id"] for r in newest_first] == [ids[2], ids[1]]
    too_long = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"startTime": 0, "endTime": 91 * 86_400_000})
    assert too_long.json() == {"code": -4047, "msg": "Time interval must be within 0-90 days"}
    wait_for(lambda: len([d for d in upbit(venue, "GET", "/v1/deposits", {"currency": "BTC", "state": "ACCEPTED"}).json()]) >= 3)
    deposits = upbit(venue, "GET", "/v1/deposits", {"currency": "BTC", "limit": 2, "page": 1}).json()
    oldest = upbit(venue, "GET", "/v1/deposits", {"currency": "BTC", "limit": 1, "order_by": "asc"}).json()
    assert len(deposits) == 2 and deposits[0]["created_at"] >= deposits[1]["created_at"] >= oldest[0]["created_at"]
    assert keys(deposits[0]) == keys(load("upbit_rest_deposits_docexample")[0])
    bad = upbit(venue, "GET", "/v1/deposits", {"limit": 101})
    assert bad.status_code == 400 and bad.json()["error"]["name"] == "validation_error"
    both = upbit(venue, "GET", "/v1/withdraws", {"uuids": ["a"], "txids": ["b"]})
    assert both.json()["error"]["name"] == "validation_error"
    assert upbit(venue, "GET", "/v1/withdraw", {"uuid": str(uuid.uuid4())}).status_code == 404
    hisrec = binance(venue, "GET", "/sapi/v1/capital/deposit/hisrec", {"coin": "BTC"})
    assert hisrec.status_code == 200 and int(hisrec.headers["X-SAPI-USED-IP-WEIGHT-1M"]) >= 1


def test_withdraw_history_is_limited_to_ten_a_second(venue):
    time.sleep(1.0 - time.monotonic() % 1.0 + 0.01)  # a fresh second: the window is per second
    answers = [binance(venue, "GET", "/sapi/v1/capital/withdraw/history") for _ in range(11)]
    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert answers[10].status_code == 429 and answers[10].json()["code"] == -1003
    assert answers[9].headers["X-SAPI-USED-UID-WEIGHT-1S"] == "180000" and "Retry-After" in answers[10].headers
    time.sleep(1.0 - time.monotonic() % 1.0 + 0.01)  # leave the next test a fresh second


# --- faults on the new paths ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["delay_after", "reset_after"])
def test_a_withdrawal_whose_answer_is_lost_took_effect_once(venue, kind):
    target = upbit_address(venue, "BTC", "BTC")
    control(venue, "binance", action="fault", kind=kind, method="POST", path="/sapi/v1/capital/withdraw/apply", seconds=0.6)
    client_id = f"lost-answer-{kind}"
    with pytest.raises((requests.Timeout, requests.ConnectionError)):
        binance(venue, "POST", "/sapi/v1/capital/withdraw/apply",
                {"coin": "BTC", "address": target["deposit_address"], "amount": "0.002", "withdrawOrderId": client_id}, timeout=0.3)
    time.sleep(0.4)
    rows = binance(venue, "GET", "/sapi/v1/capital/withdraw/history", {"withdrawOrderId": client_id}).json()
    assert len(rows) == 1 and rows[0]["amount"] == "0.0018"


def test_an_upbit_withdrawal_dropped_before_the_venue_never_happened(venue):
    target = binance_address(venue, "BTC")
    register(venue, "BTC", "BTC", target["address"])
    control(venue, "upbit", action="fault", kind="timeout_before", method="POST", path="/v1/withdraws/coin", seconds=0.5)
    before = balance(venue, "upbit", "BTC"), len(records(venue)[0])
    with pytest.raises(requests.Timeout):
        upbit(venue, "POST", "/v1/withdraws/coin", body={"currency": "BTC", "net_type": "BTC", "amount": "0.01",
                                                         "address": target["address"]}, timeout=0.2)
    time.sleep(0.6)
    assert (balance(venue, "upbit", "BTC"), len(records(venue)[0])) == before
    state = requests.get(f"{venue.server.upbit_url}/_venue/state", timeout=5).json()["transfers"]
    assert state["delay"] == DELAY and state["lose_deposit"] is False
