from django.contrib import admin

from .models import Balance, Fill, LedgerEntry, Order, Pair, Position, Signal


class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is written by the trading loop only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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


admin.site.register([Fill, LedgerEntry, Balance, Position], ReadOnlyAdmin)
