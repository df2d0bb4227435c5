"""Seed the four agents of the Go gateway with their default routing names, so a fresh install
routes out of the box (the demo agents serve these ports)."""

from django.db import migrations

SEED = [
    ("venta", "Ventas", 8001, ["venta", "ventas"]),
    ("cita", "Citas", 8002, ["cita", "citas"]),
    ("reserva", "Reservas", 8003, ["reserva", "reservas"]),
    ("citas_ventas", "Citas y ventas", 8004, ["citas_ventas", "citas y ventas"]),
]


def seed(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    RoutingName = apps.get_model("agents", "RoutingName")
    ConfigVersion = apps.get_model("agents", "ConfigVersion")
    for key, name, port, routing_names in SEED:
        agent, created = Agent.objects.get_or_create(
            key=key,
            defaults={"name": name, "url": f"http://127.0.0.1:{port}/api/chat", "timeout_s": 25.0},
        )
        if created:
            for routing_name in routing_names:
                RoutingName.objects.get_or_create(name=routing_name, defaults={"agent": agent})
    for kind in ("agents", "api_keys"):
        ConfigVersion.objects.get_or_create(name=kind, defaults={"version": 1})


def unseed(apps, schema_editor):
    apps.get_model("agents", "Agent").objects.filter(key__in=[s[0] for s in SEED]).delete()


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
