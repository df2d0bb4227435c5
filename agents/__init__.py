"""The configuration domain, a Django app: agents, routing names and tenants as admins edit
them, the operational state rows the gateway writes, and every write path (services, signals,
import/export)."""
