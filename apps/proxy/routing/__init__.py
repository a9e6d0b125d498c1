"""Routing: send chosen calls to another model or provider (CLAUDEMON_ROUTES_FILE).

config.py loads and hot-reloads the routes file, match.py picks a rule for a call,
convert.py translates Anthropic Messages <-> OpenAI Chat Completions, providers.py
sends to a provider, serve.py answers a routed call. A call no rule matches never
reaches anything but match.py's `route_for`.
"""
