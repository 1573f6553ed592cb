"""Widgets: render model state, emit signals; no session logic here."""
