"""The operator's surfaces, a Django app: admin pages for agents and API keys, and the management
commands (check_agents, import_agents, export_agents, demo_agents)."""
