from django.contrib import admin

from liveguard.admin import ReadOnlyAdmin
from liveguard.models import save_audited

from .fees import rates, save_schedule
from .models import Balance, CoinStrategy, FeeSchedule, Fill, LedgerEntry, Order, Pair, Position, Signal
from .wiring import get_state


@admin.register(Signal)
class SignalAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "symbol", "buy_exchange", "sell_exchange", "net_spread_pct", "outcome", "reason")
    list_filter = ("outcome", "symbol")


@admin.register(Pair)
class PairAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "symbol", "kind", "buy_exchange", "sell_exchange", "quantity", "state", "net_pnl")
    list_filter = ("state", "kind", "symbol")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "exchange", "symbol", "side", "quantity", "filled_quantity", "average_price", "status")
    list_filter = ("exchange", "status", "symbol")


admin.site.register([LedgerEntry, Balance, Position], ReadOnlyAdmin)


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "order", "price", "quantity", "fee", "fee_asset", "fee_krw", "fee_note")


@admin.register(FeeSchedule)
class FeeScheduleAdmin(admin.ModelAdmin):
    """Each venue's rates for an account; a change is audited and every worker re-reads it at once."""

    list_display = ("venue", "account", "vip_tier", "effective_taker", "effective_maker", "pay_fees_in_bnb", "updated_at")
    readonly_fields = ("effective_taker", "effective_maker", "updated_at")

    @admin.display(description="taker charged")
    def effective_taker(self, obj):
        return f"{rates(obj.venue, obj).taker * 100:.4f} %" if obj.venue else "-"

    @admin.display(description="maker charged")
    def effective_maker(self, obj):
        return f"{rates(obj.venue, obj).maker * 100:.4f} %" if obj.venue else "-"

    def save_model(self, request, obj, form, change):
        save_schedule(get_state(), obj, request.user)

    def has_delete_permission(self, request, obj=None):
        return False  # set the published rates back instead: every change stays in the audit log


@admin.register(CoinStrategy)
class CoinStrategyAdmin(admin.ModelAdmin):
    list_display = ("symbol", "strategy", "entry_deviation_pct", "exit_deviation_pct", "lookback_seconds", "updated_at")

    def save_model(self, request, obj, form, change):
        save_audited(obj, request.user)  # every change to how a coin trades is audited
