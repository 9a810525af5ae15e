"""Backbones (see cdr.interfaces); each module registers one component."""
