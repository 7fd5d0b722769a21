from django.urls import path

from . import views

urlpatterns = [
    path("livez", views.LivezView.as_view(), name="livez"),
    path("health", views.HealthView.as_view(), name="health"),
    path("metrics/live", views.MetricsView.as_view(), name="metrics-live"),
    path("pnl", views.PnlView.as_view(), name="pnl"),
    path("pnl/pairs", views.PairPnlView.as_view(), name="pnl-pairs"),
    path("equity/history", views.EquityHistoryView.as_view(), name="equity-history"),
    path("positions", views.PositionsView.as_view(), name="positions"),
    path("positions/<str:symbol>", views.PositionDetailView.as_view(), name="position"),
    path("signals", views.SignalsView.as_view(), name="signals"),
    path("signals/<str:symbol>", views.SignalDetailView.as_view(), name="signal"),
    path("orders", views.OrdersView.as_view(), name="orders"),
    path("orders/<str:order_id>", views.OrderDetailView.as_view(), name="order"),
    path("executions", views.ExecutionsView.as_view(), name="executions"),
    path("premiums", views.PremiumsView.as_view(), name="premiums"),
    path("premiums/<str:symbol>/history", views.PremiumHistoryView.as_view(), name="premium-history"),
]
