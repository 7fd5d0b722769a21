from django.contrib import admin, messages

from . import ports
from .models import AuditLog, GuardEvent, GuardLimits, KillSwitch, TransferLimits, save_audited
from .services import save_limits, set_kill_switch


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the code only (the audit log here, the ledger in trading): never by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SingletonAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return not self.model.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(GuardLimits)
class GuardLimitsAdmin(SingletonAdmin):
    readonly_fields = ("updated_at",)

    def save_model(self, request, obj, form, change):
        save_limits(ports.state(), obj, request.user)


@admin.register(TransferLimits)
class TransferLimitsAdmin(SingletonAdmin):
    readonly_fields = ("updated_at",)

    def save_model(self, request, obj, form, change):
        save_audited(obj, request.user)  # withdrawals are audited like every other control


@admin.register(KillSwitch)
class KillSwitchAdmin(SingletonAdmin):
    fields = ("engaged", "reason", "changed_by", "changed_at")
    readonly_fields = ("changed_by", "changed_at")
    actions = ["flatten_positions"]

    def save_model(self, request, obj, form, change):
        set_kill_switch(ports.state(), obj.engaged, request.user, obj.reason)

    @admin.action(description="Flatten: close every open position with reverse pairs")
    def flatten_positions(self, request, queryset):
        ports.request_flatten()
        self.message_user(request, "Flatten requested: open positions are being closed.", messages.WARNING)


@admin.register(GuardEvent)
class GuardEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "check_name", "symbol", "reason")
    list_filter = ("check_name", "symbol")
    readonly_fields = [f.name for f in GuardEvent._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user", "model", "field", "old_value", "new_value")
