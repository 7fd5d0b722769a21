"""Controls: staff only (session with CSRF, or a staff user's token). Every change is audited."""


from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import ports
from ..models import GuardLimits, KillSwitch, SymbolPause
from ..services import pause_symbol, resume_symbol, save_limits, set_kill_switch


class KillSwitchSerializer(serializers.Serializer):
    engaged = serializers.BooleanField()
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200)
    flatten = serializers.BooleanField(required=False, default=False, write_only=True)


class KillSwitchStateSerializer(serializers.Serializer):
    """The answer of GET and POST /control/kill-switch (`flatten` only when one was requested)."""

    engaged = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    changed_at = serializers.DateTimeField(allow_null=True)
    changed_by = serializers.CharField(allow_null=True)
    flatten = serializers.CharField(required=False)


class FlattenRequestedSerializer(serializers.Serializer):
    flatten = serializers.CharField()


class PauseSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class PausedSymbolSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    reason = serializers.CharField()
    since = serializers.DateTimeField(source="created_at")
    until = serializers.DateTimeField(allow_null=True)


class PauseStateSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    paused = serializers.BooleanField()


class EmptySerializer(serializers.Serializer):
    """A body that must be a JSON object (or empty); its keys are ignored."""


class LimitsSerializer(serializers.ModelSerializer):
    class Meta:
        model = GuardLimits
        exclude = ["id"]
        read_only_fields = ["updated_at"]


def switch_body(switch: KillSwitch) -> dict:
    return {"engaged": switch.engaged, "reason": switch.reason, "changed_at": switch.changed_at,
            "changed_by": switch.changed_by.get_username() if switch.changed_by else None}


class ControlPermission(BasePermission):
    """Django's model permissions, as in the admin: view_<model> to read, change_<model> to change.

    A staff flag alone grants nothing (the admin refuses such a user too); a superuser has every permission.
    """

    message = "you do not have the permission for this control"

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        model = view.control_model
        action = "view" if request.method in ("GET", "HEAD", "OPTIONS") else "change"
        return user.has_perm(f"{model._meta.app_label}.{action}_{model._meta.model_name}")


def parse_body(request, serializer_class, **kwargs):
    """Validate a control body: a JSON object only; anything else is a 400 with field errors."""
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer


class ControlView(APIView):
    permission_classes = [ControlPermission]
    control_model = KillSwitch


class KillSwitchView(ControlView):
    serializer_class = KillSwitchSerializer

    @extend_schema(responses=KillSwitchStateSerializer)
    def get(self, request):
        return Response(KillSwitchStateSerializer(switch_body(KillSwitch.load())).data)

    @extend_schema(request=KillSwitchSerializer, responses=KillSwitchStateSerializer)
    def post(self, request):
        data = parse_body(request, KillSwitchSerializer)
        state = ports.state()
        switch = set_kill_switch(state, data.validated_data["engaged"], request.user, data.validated_data.get("reason", ""))
        body = switch_body(switch)
        if data.validated_data.get("flatten"):
            ports.request_flatten()
            body["flatten"] = "requested"
        ports.announce_control(state)
        return Response(KillSwitchStateSerializer(body).data)


class FlattenView(ControlView):
    control_model = KillSwitch

    @extend_schema(request=None, responses={202: FlattenRequestedSerializer})
    def post(self, request):
        parse_body(request, EmptySerializer)
        ports.request_flatten()
        return Response(FlattenRequestedSerializer({"flatten": "requested"}).data, status=202)


class LimitsView(ControlView):
    serializer_class = LimitsSerializer
    control_model = GuardLimits

    def get(self, request):
        return Response(LimitsSerializer(GuardLimits.load()).data)

    def patch(self, request):
        limits = GuardLimits.load()
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["a JSON object of limits is expected"]})
        data = LimitsSerializer(limits, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        for name, value in data.validated_data.items():
            setattr(limits, name, value)
        try:
            save_limits(ports.state(), limits, request.user)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from None
        return Response(LimitsSerializer(limits).data)


class PausedSymbolsView(ControlView):
    control_model = SymbolPause

    @extend_schema(responses=PausedSymbolSerializer(many=True))
    def get(self, request):
        return Response(PausedSymbolSerializer(SymbolPause.active(), many=True).data)


class SymbolPauseView(ControlView):
    control_model = SymbolPause

    @extend_schema(
        request=PauseSerializer,
        responses=PauseStateSerializer,
    )
    def post(self, request, symbol: str = "", action: str = ""):
        body = parse_body(request, PauseSerializer)
        if action not in ("pause", "resume"):
            raise ValidationError({"action": "use /control/symbols/<symbol>/pause or /resume"})
        state = ports.state()
        symbol = symbol.upper()
        if not ports.known_symbol(state, symbol):
            raise NotFound(f"unknown symbol {symbol!r}")
        if action == "pause":
            pause_symbol(state, symbol, request.user, body.validated_data.get("reason", ""))
            return Response(PauseStateSerializer({"symbol": symbol, "paused": True}).data)
        resume_symbol(state, symbol, request.user)
        return Response(PauseStateSerializer({"symbol": symbol, "paused": False}).data)


