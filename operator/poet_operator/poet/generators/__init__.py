"""Operate: the generators that write `monitor.py`.

`template` renders the domain templates (default, offline, deterministic); `llm` asks an OpenAI-compatible
model and is the only module that talks to one; `prompt` builds what the model is told.
"""

from poet_operator.poet.generators.template import TemplateGenerator, TemplatePlan, render

__all__ = ["TemplateGenerator", "TemplatePlan", "render"]
