from django.urls import path

from . import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("board", views.premium_board, name="board"),
    path("activity", views.activity, name="activity"),
    path("metrics", views.metrics, name="metrics"),
]
