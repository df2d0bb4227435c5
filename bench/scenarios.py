"""What the bench sends: chat bodies, and the probe that checks a scenario answers as it should."""

import urllib.error
import urllib.request

import orjson

from bench.stack import API_KEY

CONFIG = {
    "nombre_bot": "MaravIA",
    "id_empresa": 1,
    "frase_saludo": "¡Hola! ¿En qué puedo ayudarte?",
    "archivo_saludo": "",
    "personalidad": "amigable y profesional",
    "frase_des": "Fue un gusto ayudarte",
    "frase_no_sabe": "No tengo esa información",
    "correo_usuario": "usuario@ejemplo.com",
    "duracion_cita_minutos": "30",
    "slots": 5,
    "agendar_usuario": "1",
    "agendar_sucursal": False,
    "id_prospecto": 3796,
    "usuario_id": 42,
    "id_chatbot": 1,
}
AUTH = {"Content-Type": "application/json", "X-API-Key": API_KEY}
CHAT_PATH = "/api/agent/chat"


def chat_body(modalidad: str, *, message: str = "Quiero agendar una cita para mañana") -> bytes:
    body = {
        "message": message,
        "session_id": 3796,
        "id_empresa": 1,
        "config": {**CONFIG, "modalidad": modalidad},
    }
    return orjson.dumps(body)


def agent_body() -> bytes:
    """What the gateway sends an agent (for the straight-to-agent reference)."""
    return orjson.dumps(
        {
            "message": "Quiero agendar una cita para mañana",
            "session_id": 3796,
            "context": {"config": CONFIG},
        }
    )


def probe(
    url: str, body: bytes | None, headers: dict[str, str], timeout_s: float = 30.0
) -> tuple[int, str | None, bytes]:
    """(status, X-Gateway-Fallback, body) of one request."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.headers.get("X-Gateway-Fallback"), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Gateway-Fallback"), exc.read()
