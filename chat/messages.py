"""The contract's user-facing texts (Spanish, byte-for-byte). Tests import these constants."""

INVALID_JSON = "JSON inválido"
EMPTY_MESSAGE = "El campo 'message' no puede estar vacío"
BAD_SESSION_ID = "El campo 'session_id' debe ser un entero mayor a 0"
BAD_ID_EMPRESA = "El campo 'id_empresa' debe ser un número mayor a 0"
EMPTY_MODALIDAD = "El campo 'config.modalidad' no puede estar vacío"
UNKNOWN_MODALIDAD = "Modalidad no reconocida: {}"
UNAUTHORIZED = "No autorizado"
FORBIDDEN_AGENT = "Esta clave no tiene acceso a este agente"
FORBIDDEN_EMPRESA = "Esta clave no tiene acceso a esta empresa"
EMPRESA_DISABLED = "Empresa deshabilitada"
METHOD_NOT_ALLOWED = "Método no permitido"
BODY_TOO_LARGE = "Body demasiado grande (máx. 512 KB)"
BODY_TIMEOUT = "El cuerpo de la solicitud no llegó a tiempo"
RATE_LIMITED = "Demasiadas solicitudes. Intenta de nuevo en un momento."
SATURATED = "Servicio temporalmente saturado. Intenta en un momento."
NOT_LOADED = "Servicio temporalmente no disponible. Intenta en un momento."
EMPTY_REPLY = "El agente especializado no pudo generar una respuesta. Intenta de nuevo."
NOT_FOUND = "No encontrado"
INTERNAL_ERROR = "Error interno del gateway"


def not_text(field: str) -> str:
    return f"El campo '{field}' debe ser texto"


def not_integer(field: str) -> str:
    return f"El campo '{field}' debe ser un número entero"


def not_boolean(field: str) -> str:
    return f"El campo '{field}' debe ser verdadero o falso"


def invalid_field(field: str) -> str:
    return f"El campo '{field}' no es válido"
