from django.urls import path

from . import views

urlpatterns = [
    path("control/kill-switch", views.KillSwitchView.as_view(), name="kill-switch"),
    path("control/flatten", views.FlattenView.as_view(), name="flatten"),
    path("control/limits", views.LimitsView.as_view(), name="limits"),
    path("control/symbols", views.PausedSymbolsView.as_view(), name="paused-symbols"),
    path("control/symbols/<str:symbol>/<str:action>", views.SymbolPauseView.as_view(), name="symbol-control"),
]
