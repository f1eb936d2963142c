"""POET: Perceive, Operate, Enforce, Train. Generates monitor code, proves it, and learns from feedback."""
