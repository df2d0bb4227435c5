"""The agent page's credentials and transport options: secret header values and the TLS client
key are write-only (encrypted on save, never rendered again; blank on edit keeps the stored
value), PEM text is checked by loading it (Agent.clean), and TLS verification turned off is
shown as a warning on the page, over the list and on save."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from agents.models import Agent, AgentHeader, header_value_validate
from agents.secrets import MARK, secret_encrypt

KEEP_PLACEHOLDER = f"{MARK} stored; leave blank to keep it"
TLS_OFF_WARNING = (
    "TLS verification is OFF for this agent: anyone between the gateway and the agent can read "
    "and change its traffic, credentials included. Use it only for a test agent."
)
TLS_FIELDS = [
    "tls_verify",
    "tls_ca_bundle",
    "tls_client_cert",
    "tls_client_key",
    "tls_client_key_clear",
    "proxy_url",
]


class _NeverRendered:
    """A widget that renders empty whatever its value: a stored secret never reaches the HTML
    (nor does a typed one, when the form comes back with errors)."""

    def format_value(self, value: Any) -> None:
        return None


class SecretInput(_NeverRendered, forms.TextInput):
    pass


class SecretTextarea(_NeverRendered, forms.Textarea):
    pass


class SecretField(forms.CharField):
    """Changed only when something was typed: blank means "keep the stored value"."""

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool(data)


def _keep_hint(field: forms.Field | None, stored: str) -> None:
    if field is not None and stored:
        field.widget.attrs["placeholder"] = KEEP_PLACEHOLDER


class AgentHeaderForm(forms.ModelForm):
    value = SecretField(
        required=False,
        widget=SecretInput(attrs={"autocomplete": "off", "size": 50}),
        help_text="Stored encrypted; never shown again after saving.",
    )

    class Meta:
        model = AgentHeader
        fields = ["name", "value"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _keep_hint(self.fields.get("value"), self.instance.value if self.instance.pk else "")

    def clean_value(self) -> str:
        value = self.cleaned_data.get("value") or ""
        if value:
            header_value_validate(value)
            return secret_encrypt(value)
        if self.instance.pk:
            return self.instance.value  # blank on edit: keep the stored value
        raise forms.ValidationError("Enter the header's value.")


class AgentHeaderFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            name = (form.cleaned_data or {}).get("name", "") if form.is_valid() else ""
            if not name or form.cleaned_data.get("DELETE"):
                continue
            if name.lower() in seen:
                raise forms.ValidationError(f"The header {name} appears twice (names ignore case).")
            seen.add(name.lower())


class AgentHeaderInline(admin.TabularInline):
    model = AgentHeader
    form = AgentHeaderForm
    formset = AgentHeaderFormSet
    extra = 0
    fields = ["name", "value"]


class AgentCredentialsForm(forms.ModelForm):
    """The agent form with the TLS client key write-only."""

    tls_client_key = SecretField(
        label="TLS: client key (PEM)",
        required=False,
        strip=False,
        widget=SecretTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="Stored encrypted; never shown again after saving.",
    )
    tls_client_key_clear = forms.BooleanField(
        label="TLS: remove the stored client key", required=False
    )

    class Meta:
        model = Agent
        fields = TLS_FIELDS  # the admin adds the rest (its fieldsets)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stored_key = self.instance.tls_client_key if self.instance.pk else ""
        _keep_hint(self.fields.get("tls_client_key"), self._stored_key)

    def clean_tls_client_key(self) -> str:
        typed = (self.cleaned_data.get("tls_client_key") or "").replace("\r\n", "\n").strip()
        return secret_encrypt(typed + "\n") if typed else self._stored_key

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("tls_client_key_clear"):
            cleaned["tls_client_key"] = ""
        for name in ("tls_ca_bundle", "tls_client_cert"):
            if name in cleaned:
                cleaned[name] = cleaned[name].replace("\r\n", "\n")
        return cleaned


class AgentCredentialsAdmin:
    """Mixed into AgentAdmin: the TLS fieldset (with its warning), the list's banner and
    filter for agents that do not verify TLS, and the warning on save."""

    credentials_fieldset = ("Credentials and transport", {"fields": TLS_FIELDS})

    def credentials_fieldset_for(self, obj: Agent | None) -> tuple[str, dict[str, Any]]:
        name, options = self.credentials_fieldset
        description = (
            "Extra request headers (credentials) are in “Request headers” below. Secrets are "
            "stored encrypted and never shown again."
        )
        if obj is not None and not obj.tls_verify:
            description = f"⚠ {TLS_OFF_WARNING} {description}"
        return name, {**options, "description": description}

    def tls_warn_on_list(self, request: HttpRequest) -> None:
        """A banner over the agent list naming the agents that do not verify TLS (a banner,
        not a column: the list's width is spoken for by the live columns and charts)."""
        if request.method != "GET":
            return
        keys = list(Agent.objects.filter(tls_verify=False).values_list("key", flat=True))
        if keys:
            messages.warning(
                request,
                f"⚠ TLS verification is off for {', '.join(sorted(keys))}: test agents only.",
            )

    def tls_warn_on_save(self, request: HttpRequest, obj: Agent) -> None:
        if not obj.tls_verify:
            messages.warning(request, f"{obj.key}: {TLS_OFF_WARNING}")
