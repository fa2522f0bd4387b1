from django.urls import path

from . import api

urlpatterns = [path("me/", api.WriterMeApi.as_view(), name="writer-me")]
