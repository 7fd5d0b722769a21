"""Limits, the kill switch, guard events and the audit trail: the database is the record of truth."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction

MONEY = {"max_digits": 28, "decimal_places": 8}

# Sane bounds for every limit: a typo (a sign, a few zeros) must be refused, never traded on.
MAX_KRW = Decimal("1000000000000000")  # 10^15 KRW
TINY = Decimal("0.00000001")
MAX_TRADES = 10**9
MAX_SECONDS = 7 * 24 * 3600
MAX_MS = 3_600_000


def krw(minimum=TINY):
    return [MinValueValidator(minimum), MaxValueValidator(MAX_KRW)]


def pct(minimum=TINY, maximum=Decimal("100")):
    """A percentage in (0, 100] by default."""
    return [MinValueValidator(minimum), MaxValueValidator(maximum)]


def upto(maximum, minimum=0):
    return [MinValueValidator(minimum), MaxValueValidator(maximum)]


class Singleton(models.Model):
    """A table of exactly one row (pk=1)."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls):
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class GuardLimits(Singleton):
    """Every limit LiveGuard enforces (defaults in docs/runbook.md). Edited in the admin; every change audited."""

    max_position_size = models.DecimalField(validators=krw(), default=Decimal("1000000"), help_text="KRW per pair", **MONEY)
    max_total_exposure = models.DecimalField(validators=krw(), default=Decimal("5000000"), **MONEY,
                                             help_text="KRW across every coin (premiums move together)")
    max_daily_loss = models.DecimalField(validators=krw(), default=Decimal("500000"), help_text="KRW", **MONEY)
    max_total_loss = models.DecimalField(validators=krw(), default=Decimal("2000000"), help_text="KRW", **MONEY)
    max_trades_per_hour = models.PositiveIntegerField(validators=upto(MAX_TRADES), default=100)
    max_trades_per_day = models.PositiveIntegerField(validators=upto(MAX_TRADES), default=1000)
    circuit_breaker_threshold_pct = models.DecimalField(validators=pct(), default=Decimal("5"), max_digits=8, decimal_places=4,
                                                        help_text="loss as % of total balance that halts trading")
    circuit_breaker_cooldown = models.PositiveIntegerField(validators=upto(MAX_SECONDS), default=300, help_text="seconds")
    max_slippage_pct = models.DecimalField(validators=pct(), default=Decimal("0.3"), max_digits=8, decimal_places=4)
    max_quote_age_ms = models.PositiveIntegerField(validators=upto(MAX_MS, 1), default=700)
    max_quote_skew_ms = models.PositiveIntegerField(validators=upto(MAX_MS), default=350)
    fx_jump_pct = models.DecimalField(validators=pct(), default=Decimal("1.5"), max_digits=8, decimal_places=4)
    max_fx_age_ms = models.PositiveIntegerField(validators=upto(MAX_MS, 1), default=5000)
    min_spread_pct = models.DecimalField(validators=pct(Decimal("0"), Decimal("99")), default=Decimal("0.3"), max_digits=8, decimal_places=4,
                                         help_text="net of both venues' fees")
    stop_loss_pct = models.DecimalField(validators=pct(), default=Decimal("1.0"), max_digits=8, decimal_places=4)
    take_profit_pct = models.DecimalField(validators=pct(), default=Decimal("0.5"), max_digits=8, decimal_places=4)
    stop_loss_cooldown = models.PositiveIntegerField(validators=upto(MAX_SECONDS), default=1800, help_text="seconds a coin waits after a stop-loss")
    max_inventory_pct = models.DecimalField(validators=pct(), default=Decimal("90"), max_digits=8, decimal_places=4,
                                            help_text="share of a venue's base inventory one pair may use")
    block_market_warnings = models.BooleanField(default=True, help_text="refuse coins with Upbit caution flags")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "guard limits"

    def __str__(self):
        return "Guard limits"

    def clean(self):
        """Cross-field rules (field bounds are the validators above); run by full_clean (admin, API, services)."""
        super().clean()
        errors = {}

        def bad(field, message):
            errors.setdefault(field, []).append(message)

        try:
            if self.max_trades_per_hour > self.max_trades_per_day:
                bad("max_trades_per_hour", "cannot exceed max_trades_per_day")
            if self.max_daily_loss > self.max_total_loss:
                bad("max_daily_loss", "cannot exceed max_total_loss")
            if self.max_position_size > self.max_total_exposure:
                bad("max_position_size", "cannot exceed max_total_exposure")
            if self.max_quote_skew_ms > self.max_quote_age_ms:
                bad("max_quote_skew_ms", "cannot exceed max_quote_age_ms")
            if self.stop_loss_pct <= 0 or self.take_profit_pct <= 0:
                pass  # the field validators answer
            elif self.take_profit_pct > 10 * self.stop_loss_pct or self.stop_loss_pct > 10 * self.take_profit_pct:
                bad("take_profit_pct", "take-profit and stop-loss must be within a factor of 10 of each other")
        except TypeError:
            return  # a missing or non-numeric value: the field errors answer
        if errors:
            raise ValidationError(errors)


class TransferLimits(Singleton):
    """Withdrawals between the venues: off unless switched on here AND configured with their own keys."""

    withdrawals_enabled = models.BooleanField(default=False)
    max_transfer_krw = models.DecimalField(default=Decimal("5000000"), help_text="KRW per transfer", **MONEY)
    max_daily_transfer_krw = models.DecimalField(default=Decimal("20000000"), help_text="KRW per KST day", **MONEY)
    rebalance_below_pct = models.DecimalField(default=Decimal("20"), max_digits=8, decimal_places=4,
                                              help_text="move coins when a venue holds less than this share")
    max_fee_pct = models.DecimalField(default=Decimal("0.5"), max_digits=8, decimal_places=4,
                                      help_text="no transfer whose network fee is a larger share of it")
    stuck_after_seconds = models.PositiveIntegerField(default=1800, help_text="a transfer not arrived by then is flagged")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "transfer limits"

    def __str__(self):
        return "Transfer limits"


class KillSwitch(Singleton):
    """Engaged: no new pair is sent. Lives in the database, so it survives restarts."""

    engaged = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "kill switch"

    def __str__(self):
        return "ENGAGED" if self.engaged else "released"


class GuardEvent(models.Model):
    """A check that blocked (or tripped) something, with its reason."""

    check_name = models.CharField(max_length=40, db_index=True)
    symbol = models.CharField(max_length=20, blank=True, db_index=True)
    reason = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.check_name} {self.symbol}: {self.reason}"


class AuditLog(models.Model):
    """Who changed which control, when, from what to what."""

    model = models.CharField(max_length=60)
    field = models.CharField(max_length=60)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.model}.{self.field}: {self.old_value} -> {self.new_value}"


def save_audited(instance: models.Model, user=None) -> list[AuditLog]:
    """Save a control object and record every field that changed."""
    cls = type(instance)
    with transaction.atomic():
        before = cls.objects.select_for_update().filter(pk=instance.pk).first()
        entries = []
        for f in cls._meta.concrete_fields:
            if f.name in {"id", "updated_at", "changed_at", "changed_by"}:
                continue
            old = getattr(before, f.attname) if before else None
            new = getattr(instance, f.attname)
            if before is None or old != new:
                entries.append(AuditLog(model=cls.__name__, field=f.name, old_value="" if old is None else str(old),
                                        new_value=str(new), user=user if user and user.is_authenticated else None))
        instance.save()
        AuditLog.objects.bulk_create(entries)
    return entries


class SymbolPause(models.Model):
    """A coin taken out of trading by an operator (no new pairs; open positions still managed)."""

    symbol = models.CharField(max_length=20, unique=True)
    reason = models.CharField(max_length=200, blank=True)
    paused_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    until = models.DateTimeField(null=True, blank=True, help_text="a cool-down ends by itself then; empty: until resumed")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.symbol} paused"

    @classmethod
    def active(cls, now=None):
        from datetime import UTC, datetime

        now = now or datetime.now(UTC)
        return cls.objects.filter(models.Q(until__isnull=True) | models.Q(until__gt=now))


# --- notifications (liveguard/alerts.py decides, liveguard/notify.py records and delivers) -----------
class Incident(models.Model):
    """An alert condition while it lasts: opened by the snapshot that first showed it, resolved by
    the first that no longer did. At most one open incident per key, so each fires exactly once."""

    key = models.CharField(max_length=200, db_index=True)
    kind = models.CharField(max_length=20)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [models.UniqueConstraint(fields=["key"], condition=models.Q(resolved_at__isnull=True),
                                               name="liveguard_one_open_incident_per_key")]

    def __str__(self):
        return f"{self.key} ({'open' if self.resolved_at is None else 'resolved'})"


class AlertEvent(models.Model):
    """Something staff are told: an incident opened or resolved, or the daily summary. `event_id`
    is the deduplication key: an event recorded twice is one row, delivered once per channel."""

    event_id = models.CharField(max_length=240, unique=True)
    kind = models.CharField(max_length=20, db_index=True)
    action = models.CharField(max_length=10)  # opened | resolved | summary
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.title


class NotificationChannel(models.Model):
    """Where alerts go, as an apprise URL (tgram://, slack://, discord://, mailto://, json://).
    The URL holds the channel's credentials: it is never shown in full."""

    name = models.SlugField(max_length=60, unique=True)
    url = models.TextField(help_text="apprise URL; a secret (it carries the token)")
    enabled = models.BooleanField(default=True)
    kinds = models.JSONField(default=list, blank=True, help_text="event kinds to send; empty: every kind")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.name


class Notification(models.Model):
    """One event on one channel: its delivery, retries and outcome, so a failure to notify shows."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"  # every attempt failed
        SUPPRESSED = "suppressed"  # over the channel's rate limit; counted in its next message

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="notifications")
    channel = models.CharField(max_length=80, help_text="a NotificationChannel's name, or env:<n> for NOTIFY_URLS")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, help_text="credentials redacted")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["event", "channel"], name="liveguard_one_notification_per_channel")]

    def __str__(self):
        return f"{self.event} -> {self.channel}: {self.status}"
