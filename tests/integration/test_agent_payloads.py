"""The exact JSON each payload format sends to the agent (contract section 2)."""

import json

CHAT = "/api/agent/chat"

N8N_BODY = {
    "message": "Quiero agendar una cita para mañana",
    "session_id": "3796",
    "id_empresa": 1,
    "api_key": "tenant-key-optional",
    "extra_top_level": "ignored",
    "config": {
        "nombre_bot": "MaravIA",
        "id_empresa": 99,
        "modalidad": "Citas",
        "frase_saludo": "¡Hola! ¿En qué puedo ayudarte?",
        "archivo_saludo": "",
        "personalidad": "amigable y profesional",
        "correo_usuario": "usuario@ejemplo.com",
        "duracion_cita_minutos": " 30.0 ",
        "slots": "5",
        "agendar_usuario": "yes",
        "agendar_sucursal": 0,
        "id_prospecto": 3796,
        "usuario_id": None,
        "unknown_config_key": "ignored",
    },
}

AGENT_CONFIG = {
    "modalidad": "Citas",
    "nombre_bot": "MaravIA",
    "id_empresa": 1,
    "frase_saludo": "¡Hola! ¿En qué puedo ayudarte?",
    "archivo_saludo": "",
    "personalidad": "amigable y profesional",
    "correo_usuario": "usuario@ejemplo.com",
    "duracion_cita_minutos": 30,
    "slots": 5,
    "agendar_usuario": True,
    "agendar_sucursal": False,
    "id_prospecto": 3796,
}


async def agent_received(gateway, make_agent, fault_agent, payload_format: str) -> dict:
    make_agent(
        "cita", url=fault_agent.url("/ok"), routing_names=["citas"], payload_format=payload_format
    )
    response = await gateway.post(CHAT, json=N8N_BODY)
    assert response.status_code == 200
    assert response.json() == {
        "reply": "echo: Quiero agendar una cita para mañana",
        "session_id": 3796,
        "agent_used": "cita",
        "url": None,
    }
    return json.loads(fault_agent.last_request().body)


async def test_context_format_sends_the_original_contract(gateway, make_agent, fault_agent):
    received = await agent_received(gateway, make_agent, fault_agent, "context")
    assert received == {
        "message": "Quiero agendar una cita para mañana",
        "session_id": 3796,
        "context": {"config": AGENT_CONFIG},
    }
    assert "tenant-key-optional" not in fault_agent.last_request().body.decode()


async def test_flat_format_sends_ids_and_the_tenant_key(gateway, make_agent, fault_agent):
    received = await agent_received(gateway, make_agent, fault_agent, "flat")
    assert received == {
        "message": "Quiero agendar una cita para mañana",
        "session_id": 3796,
        "id_empresa": 1,
        "api_key": "tenant-key-optional",
        "config": AGENT_CONFIG,
    }


async def test_id_empresa_from_config_is_used_when_absent_at_the_top(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/ok"), payload_format="flat")
    body = {"message": "hola", "session_id": 5, "config": {"modalidad": "cita", "id_empresa": "7"}}
    assert (await gateway.post(CHAT, json=body)).status_code == 200
    received = json.loads(fault_agent.last_request().body)
    assert received["id_empresa"] == 7
    assert received["config"] == {"modalidad": "cita", "id_empresa": 7}
    assert received["api_key"] is None
