"""Training + evaluation pipelines: cold-start (MuSiC protocol) and inductive (MICRec protocol)."""
