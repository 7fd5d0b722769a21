from django import forms
from django.contrib import admin, messages

from . import ports
from .alerts import KINDS
from .models import (
    AlertEvent,
    AuditLog,
    GuardEvent,
    GuardLimits,
    Incident,
    KillSwitch,
    Notification,
    NotificationChannel,
    TransferLimits,
    save_audited,
)
from .notify import mask_url
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


class NotificationChannelForm(forms.ModelForm):
    """The URL is write-only: never rendered back (it carries the channel's token); left blank, it is kept."""

    url = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                          help_text="apprise URL (tgram://, slack://, discord://, mailto://, json://); blank keeps the current one")

    class Meta:
        model = NotificationChannel
        fields = ("name", "url", "enabled", "kinds")

    def clean_url(self):
        url = self.cleaned_data.get("url", "").strip()
        if not url:
            if self.instance.pk and self.instance.url:
                return self.instance.url
            raise forms.ValidationError("A URL is required.")
        import apprise  # here: 19 MB a process, and only this form and the sender need it

        if not apprise.Apprise().add(url):
            raise forms.ValidationError("Not a notification URL apprise understands.")
        return url

    def clean_kinds(self):
        kinds = self.cleaned_data.get("kinds") or []
        unknown = sorted(set(kinds) - set(KINDS)) if isinstance(kinds, list) else ["(not a list)"]
        if unknown:
            raise forms.ValidationError(f"Unknown kinds {unknown}; use a list of {list(KINDS)}.")
        return kinds


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = ("name", "masked_url", "enabled", "kinds", "updated_at")

    @admin.display(description="URL")
    def masked_url(self, obj):
        return mask_url(obj.url)

    def save_model(self, request, obj, form, change):
        """Audited like every control, with the URL masked (the audit log is read by more people)."""
        before = NotificationChannel.objects.filter(pk=obj.pk).first() if obj.pk else None
        obj.save()
        old = "" if before is None else f"{mask_url(before.url)} enabled={before.enabled} kinds={before.kinds}"
        new = f"{mask_url(obj.url)} enabled={obj.enabled} kinds={obj.kinds}"
        if before is not None and before.url != obj.url:
            new += " (URL changed)"
        AuditLog.objects.create(model="NotificationChannel", field=obj.name, old_value=old, new_value=new,
                                user=request.user if request.user.is_authenticated else None)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """A failed or suppressed notification shows here: a failure to notify is itself visible."""

    list_display = ("created_at", "event", "channel", "status", "attempts", "last_error", "sent_at")
    list_filter = ("status", "channel")


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "action", "title")
    list_filter = ("kind", "action")


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ("opened_at", "key", "title", "resolved_at")
    list_filter = ("kind",)
