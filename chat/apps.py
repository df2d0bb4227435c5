"""The chat app: an installed app without models, so Django treats the package as one of its own."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
