"""The nginx agent stub: one nginx worker answering the agent contract on every stub path.

`echo_sleep` (libnginx-mod-http-echo) gives the delayed variants without a Python process in the
measurement. Used when nginx and the echo module are installed; else bench/stub/agent.py.
"""

import shutil
from pathlib import Path

from bench.stub.paths import REPLY, STUB_PATHS

ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")


def nginx_available() -> bool:
    return shutil.which("nginx") is not None and ECHO_MODULE.exists()


def _location(path: str, delay_s: float) -> str:
    body = REPLY.decode()
    if delay_s <= 0:
        return f"location = {path} {{ return 200 '{body}'; }}"
    return f"location = {path} {{ echo_sleep {delay_s:g}; echo -n '{body}'; }}"


def nginx_conf(workdir: Path, port: int) -> str:
    locations = "\n    ".join(_location(path, delay) for path, delay in STUB_PATHS.items())
    return f"""
load_module {ECHO_MODULE};
worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
  default_type application/json;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /health {{ return 200 '{{"status":"ok"}}'; }}
    {locations}
  }}
}}
"""


def nginx_command(workdir: Path, port: int) -> list[str]:
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(workdir, port))
    return ["nginx", "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "nginx-error.log")]
