import pytest
from django.db.models.signals import post_save

from trading import engine

CONTROL_PERMISSIONS = ("view_killswitch", "change_killswitch", "view_guardlimits", "change_guardlimits",
                       "view_symbolpause", "change_symbolpause")


@pytest.fixture(autouse=True)
def _fresh_caches():
    engine.forget_limits()
    yield
    engine.forget_limits()


@pytest.fixture(autouse=True)
def _operators_hold_the_control_permissions(request):
    """The `staff` operator ("ops") of these tests holds the control permissions: controls follow Django's
    model permissions (a staff flag alone grants nothing, as in the admin)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    def grant(sender, instance, created, **kwargs):
        if created and instance.username == "ops" and instance.is_staff:
            instance.user_permissions.add(*Permission.objects.filter(codename__in=CONTROL_PERMISSIONS))

    model = get_user_model()
    post_save.connect(grant, sender=model, dispatch_uid="test-ops-permissions")
    yield
    post_save.disconnect(sender=model, dispatch_uid="test-ops-permissions")
