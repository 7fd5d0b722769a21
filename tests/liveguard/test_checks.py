from liveguard.checks import LIVE_CONFIRM_PHRASE, live_mode_checks, market_data_checks


def ids(problems):
    return sorted(p.id for p in problems)


def test_paper_mode_needs_no_keys(settings):
    settings.LIVE_MODE = False
    assert live_mode_checks() == []


def test_live_mode_without_keys_or_opt_in_is_an_error(settings):
    settings.LIVE_MODE = True
    settings.LIVE_MODE_CONFIRM = ""
    settings.UPBIT_API_KEY = settings.UPBIT_SECRET_KEY = settings.BINANCE_API_KEY = settings.BINANCE_SECRET_KEY = ""
    settings.SECRET_KEY = settings.INSECURE_SECRET_KEY
    assert ids(live_mode_checks()) == ["kimp.E001"] * 4 + ["kimp.E002", "kimp.E003"]


def test_live_mode_with_keys_and_opt_in_passes(settings):
    settings.LIVE_MODE = True
    settings.DEBUG = False
    settings.LIVE_MODE_CONFIRM = LIVE_CONFIRM_PHRASE
    settings.UPBIT_API_KEY = settings.UPBIT_SECRET_KEY = settings.BINANCE_API_KEY = settings.BINANCE_SECRET_KEY = "k"
    settings.SECRET_KEY = "a-real-secret"
    assert live_mode_checks() == []


def test_unknown_fx_source_is_an_error(settings):
    settings.FX_SOURCE = "telepathy"
    assert ids(market_data_checks()) == ["kimp.E010"]


def test_withdrawal_keys_are_separate_from_the_trading_keys(settings):
    from liveguard.checks import withdrawal_key_checks

    settings.UPBIT_API_KEY = "trade-key"
    settings.UPBIT_WITHDRAW_API_KEY, settings.UPBIT_WITHDRAW_SECRET_KEY = "trade-key", "s"
    assert [p.id for p in withdrawal_key_checks()] == ["kimp.E021"]
    settings.UPBIT_WITHDRAW_API_KEY, settings.UPBIT_WITHDRAW_SECRET_KEY = "withdraw-key", ""
    assert [p.id for p in withdrawal_key_checks()] == ["kimp.E020"]
    settings.UPBIT_WITHDRAW_SECRET_KEY = "s"
    assert withdrawal_key_checks() == []
