"""Server-rendered pages of the data deployment: one small view per page.

One module per family of pages: usage (the overview, usage reports,
performance), requests (the list, the inspector, the live feed), sessions
(sessions, one session, its thread, projects, search, todos) and health (the
public health and readiness probes).
"""
