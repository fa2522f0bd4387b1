from django.apps import AppConfig


class WritersConfig(AppConfig):
    name = "writers"
    verbose_name = "Writers"
