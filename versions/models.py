"""Versions of the configuration: after every change, the whole configuration as a document
(versions/document.py) and the diff from the version before."""

from django.db import models
from django.utils import timezone


class Source(models.TextChoices):
    BASELINE = "baseline"  # the state found when versions began (migrate)
    ADMIN = "admin"
    IMPORT = "import"
    ROLLBACK = "rollback"
    COMMAND = "command"
    SHELL = "shell"


class Version(models.Model):
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    author = models.CharField(max_length=150, help_text="The admin user, or the command.")
    source = models.CharField(max_length=16, choices=Source.choices)
    summary = models.CharField(max_length=500)
    document = models.JSONField(help_text="The whole configuration after this change.")
    changes = models.JSONField(default=list, help_text="The diff from the version before.")
    # Matches the version a transaction is still writing (versions/recording.py).
    token = models.CharField(max_length=32, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "configuration version"

    def __str__(self) -> str:
        return f"#{self.pk} {self.summary}"


class VersionObject(models.Model):
    """One object a version touched, so history can be filtered by object."""

    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="touched")
    kind = models.CharField(max_length=16)  # agent, tenant, api_key (versions/diff.py KINDS)
    ident = models.CharField(max_length=100)
    label = models.CharField(max_length=150)
    op = models.CharField(max_length=8)  # created, changed, deleted

    class Meta:
        indexes = [models.Index(fields=["kind", "ident"])]

    def __str__(self) -> str:
        return f"{self.op} {self.kind} {self.label}"
