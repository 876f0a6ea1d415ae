"""The example's URLs."""

from __future__ import annotations

from django.urls import path

from exampleproject import views

urlpatterns = [
    path("", views.home),
    path("login", views.login),
    path("logout", views.logout),
    path("logout-everywhere", views.logout_everywhere),
    path("search", views.search),
    path("cached", views.cached),
]
