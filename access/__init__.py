"""Access control, a Django app: API keys (their table and admin data), who the caller is
(auth), and how often it may call (per-key and per-IP rate limits)."""
